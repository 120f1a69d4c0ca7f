-- Miscellaneous process and system functions, and the deflate/inflate extension.
local H = require "helper"
local uv = H.uv
local fixtures = require "fixtures"

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local slurp = fixtures.read

describe("misc", function()
  after_each(H.after_each)

  describe("cwd / chdir", function()
    local saved
    before_each(function() saved = uv.cwd() end)
    after_each(function() uv.chdir(saved) end)

    it("cwd returns the working directory; chdir returns 0 and changes it", function()
      assert.equal(sh("pwd -P"), uv.cwd())
      assert.equal(0, uv.chdir("/tmp"))
      assert.equal("/tmp", uv.cwd())
      assert.equal(0, uv.chdir(saved))
      assert.equal(saved, uv.cwd())
    end)

    it("chdir to a missing directory returns the ENOENT triple", function()
      assert.same({ nil, "ENOENT: no such file or directory", "ENOENT" }, { uv.chdir("/nonexistent-luvrs-dir") })
      assert.equal(saved, uv.cwd())
    end)
  end)

  describe("process ids", function()
    it("os_getpid and os_getppid match /proc", function()
      local stat = slurp("/proc/self/stat") -- "pid (comm) state ppid ..."
      local pid, ppid = stat:match("^(%d+) %(.*%) %S+ (%d+)")
      assert.equal(tonumber(pid), uv.os_getpid())
      assert.equal(tonumber(ppid), uv.os_getppid())
    end)
  end)

  describe("host", function()
    it("os_gethostname is the kernel's host name", function()
      assert.equal(sh("cat /proc/sys/kernel/hostname"), uv.os_gethostname())
    end)

    it("os_uname has sysname, release, version, machine", function()
      local u = uv.os_uname()
      assert.equal(sh("uname -s"), u.sysname)
      assert.equal(sh("uname -r"), u.release)
      assert.equal(sh("uname -v"), u.version)
      assert.equal(sh("uname -m"), u.machine)
    end)

    it("available_parallelism is the number of usable CPUs", function()
      local n = uv.available_parallelism()
      assert.equal("integer", math.type(n))
      assert.equal(tonumber(sh("nproc")), n)
    end)

    it("uptime is the system uptime in seconds", function()
      local up = uv.uptime()
      local proc = tonumber(slurp("/proc/uptime"):match("^(%S+)"))
      assert.is_true(math.abs(up - proc) < 2, ("uptime %s vs /proc %s"):format(up, proc))
    end)
  end)

  describe("environment", function()
    it("os_getenv returns the value, or the ENOENT triple when unset", function()
      assert.equal(os.getenv("PATH"), uv.os_getenv("PATH"))
      assert.same({ nil, "ENOENT: no such file or directory", "ENOENT" }, { uv.os_getenv("LUVRS_SPEC_UNSET") })
    end)

    it("os_setenv and os_unsetenv return true and affect os.getenv", function()
      assert.same({ true }, { uv.os_setenv("LUVRS_SPEC_VAR", "v1") })
      assert.equal("v1", uv.os_getenv("LUVRS_SPEC_VAR"))
      assert.equal("v1", os.getenv("LUVRS_SPEC_VAR"))
      assert.is_true(uv.os_setenv("LUVRS_SPEC_VAR", "v2"))
      assert.equal("v2", uv.os_getenv("LUVRS_SPEC_VAR"))
      assert.same({ true }, { uv.os_unsetenv("LUVRS_SPEC_VAR") })
      assert.is_nil(os.getenv("LUVRS_SPEC_VAR"))
      assert.is_nil((uv.os_getenv("LUVRS_SPEC_VAR")))
    end)

    it("os_setenv with an invalid name returns the EINVAL triple", function()
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.os_setenv("A=B", "x") })
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.os_setenv("", "x") })
    end)

    it("os_getenv with a too small size returns the ENOBUFS triple", function()
      uv.os_setenv("LUVRS_SPEC_LONG", "0123456789")
      assert.same({ nil, "ENOBUFS: no buffer space available", "ENOBUFS" }, { uv.os_getenv("LUVRS_SPEC_LONG", 4) })
      assert.equal("0123456789", uv.os_getenv("LUVRS_SPEC_LONG", 11))
      uv.os_unsetenv("LUVRS_SPEC_LONG")
    end)

    it("os_homedir follows HOME", function()
      assert.equal(os.getenv("HOME"), uv.os_homedir())
      local saved = os.getenv("HOME")
      uv.os_setenv("HOME", "/luvrs/home")
      local got = uv.os_homedir()
      uv.os_setenv("HOME", saved)
      assert.equal("/luvrs/home", got)
    end)

    it("os_tmpdir follows TMPDIR, else /tmp", function()
      local saved = os.getenv("TMPDIR")
      uv.os_setenv("TMPDIR", "/var/tmp")
      local with = uv.os_tmpdir()
      uv.os_unsetenv("TMPDIR")
      local without = uv.os_tmpdir()
      if saved then uv.os_setenv("TMPDIR", saved) end
      assert.equal("/var/tmp", with)
      assert.equal("/tmp", without)
    end)
  end)

  describe("resources", function()
    it("getrusage returns the rusage fields, times as {sec, usec}", function()
      local r = uv.getrusage()
      for _, k in ipairs({ "idrss", "inblock", "isrss", "ixrss", "majflt", "maxrss", "minflt", "msgrcv", "msgsnd",
        "nivcsw", "nsignals", "nswap", "nvcsw", "oublock" }) do
        assert.equal("number", type(r[k]), k)
      end
      for _, k in ipairs({ "utime", "stime" }) do
        assert.equal("number", type(r[k].sec), k)
        assert.is_true(r[k].usec >= 0 and r[k].usec < 1000000, k)
      end
      assert.is_true(r.maxrss > 0)
      assert.is_true(r.utime.sec + r.utime.usec / 1e6 > 0)
    end)

    it("resident_set_memory is this process's RSS in bytes", function()
      local rss = uv.resident_set_memory()
      assert.equal("integer", math.type(rss))
      local ref = H.rss()
      assert.is_true(math.abs(rss - ref) < 16 * 1024 * 1024, ("%d vs statm %d"):format(rss, ref))
    end)
  end)

  describe("time", function()
    it("sleep blocks for at least the given ms and returns nothing", function()
      local t0 = uv.hrtime()
      assert.equal(0, select("#", uv.sleep(30)))
      assert.is_true(uv.hrtime() - t0 >= 29e6)
    end)

    it("gettimeofday returns seconds and microseconds since the epoch", function()
      local sec, usec = uv.gettimeofday()
      assert.equal("integer", math.type(sec))
      assert.equal("integer", math.type(usec))
      assert.is_true(math.abs(sec - os.time()) <= 1)
      assert.is_true(usec >= 0 and usec < 1000000)
    end)
  end)

  describe("exepath", function()
    it("is the running interpreter's path", function()
      assert.equal(sh("readlink /proc/" .. math.tointeger(uv.os_getpid()) .. "/exe"), uv.exepath())
    end)
  end)

  describe("system information", function()
    it("get_total_memory and get_free_memory match /proc/meminfo", function()
      local total = uv.get_total_memory()
      local kb = tonumber(slurp("/proc/meminfo"):match("MemTotal:%s*(%d+)"))
      assert.are.equal(kb * 1024, total)
      local free = uv.get_free_memory()
      assert.is_true(free > 0 and free <= total)
    end)

    it("loadavg returns three non-negative numbers", function()
      local a, b, c = uv.loadavg()
      for _, v in ipairs({ a, b, c }) do
        assert.is_number(v)
        assert.is_true(v >= 0)
      end
    end)

    it("cpu_info lists every CPU with model, speed and times", function()
      local cpus = uv.cpu_info()
      local n = tonumber(sh("grep -c '^cpu[0-9]' /proc/stat"))
      assert.are.equal(n, #cpus)
      for _, cpu in ipairs(cpus) do
        assert.is_string(cpu.model)
        assert.is_number(cpu.speed)
        for _, k in ipairs({ "user", "nice", "sys", "idle", "irq" }) do
          assert.is_number(cpu.times[k], k)
        end
        assert.is_true(cpu.times.idle > 0)
      end
    end)

    it("interface_addresses includes the loopback interface", function()
      local ifs = uv.interface_addresses()
      local lo = ifs.lo
      assert.is_table(lo)
      local v4
      for _, a in ipairs(lo) do
        assert.is_true(a.internal)
        assert.are.equal(6, #a.mac)
        if a.family == "inet" then v4 = a end
      end
      assert.are.same({ ip = "127.0.0.1", family = "inet", netmask = "255.0.0.0", internal = true,
        mac = ("\0"):rep(6) }, v4)
    end)

    it("random returns bytes, synchronously or through a callback", function()
      local a, b = uv.random(32), uv.random(32)
      assert.are.equal(32, #a)
      assert.are_not.equal(a, b)
      assert.are.equal("", uv.random(0))
      local ok, _, code = uv.random(-1)
      assert.is_nil(ok)
      assert.are.equal("E2BIG", code)
      local got
      assert.are.equal(0, uv.random(16, {}, H.expect(function(err, bytes)
        assert.is_nil(err)
        got = bytes
      end)))
      H.run()
      assert.are.equal(16, #got)
    end)

    it("os_environ is the environment as a table", function()
      local env = uv.os_environ()
      assert.are.equal(os.getenv("PATH"), env.PATH)
      assert.are.equal(os.getenv("HOME"), env.HOME)
    end)

    it("getuid and getgid are the process's ids", function()
      assert.are.equal(tonumber(sh("id -u")), uv.getuid())
      assert.are.equal(tonumber(sh("id -g")), uv.getgid())
    end)
  end)

  describe("bad arguments", function()
    it("name the function and the argument", function()
      for _, case in ipairs({
        { "chdir", uv.chdir, {}, 1 },
        { "os_getenv", uv.os_getenv, {}, 1 },
        { "os_setenv", uv.os_setenv, { "X" }, 2 },
        { "os_unsetenv", uv.os_unsetenv, {}, 1 },
        { "sleep", uv.sleep, { "soon" }, 1 },
      }) do
        local name, fn, args, pos = case[1], case[2], case[3], case[4]
        local ok, err = pcall(fn, table.unpack(args))
        assert.is_false(ok, name)
        assert.matches(name, err, 1, true)
        assert.matches("bad argument #" .. pos, err, 1, true)
      end
    end)
  end)

  describe("luvrs extension: deflate/inflate", function()
    if H.impl ~= "luvrs" then
      pending("uv.new_deflate / uv.new_inflate are luvrs extensions")
      return
    end

    local text = string.rep("The quick brown fox jumps over the lazy dog. ", 2000)

    local function python(code, input)
      local inpath, outpath = fixtures.tmpfile(input), os.tmpname()
      local script = fixtures.tmpfile("import sys, zlib, gzip\ndata = open(sys.argv[1], 'rb').read()\n" .. code
        .. "\nopen(sys.argv[2], 'wb').write(out)\n")
      local ok = os.execute(("python3 %s %s %s"):format(script, inpath, outpath))
      local out = slurp(outpath)
      os.remove(inpath)
      os.remove(outpath)
      os.remove(script)
      assert.is_true(ok)
      return out
    end

    for _, format in ipairs({ "raw", "zlib", "gzip" }) do
      it(format .. ": deflate then inflate gives the input back", function()
        local d = uv.new_deflate({ format = format, level = 6 })
        local parts = {}
        for i = 1, #text, 7000 do parts[#parts + 1] = d:write(text:sub(i, i + 6999), "none") end
        parts[#parts + 1] = d:write("", "finish")
        local z = table.concat(parts)
        assert.is_true(#z < #text // 10)
        local inf = uv.new_inflate({ format = format })
        local out = {}
        for i = 1, #z, 100 do out[#out + 1] = assert(inf:write(z:sub(i, i + 99))) end
        assert.equal(text, table.concat(out))
      end)
    end

    it("gzip output starts with the gzip magic and is readable by Python's gzip", function()
      local d = uv.new_deflate({ format = "gzip" })
      local z = d:write(text, "finish")
      assert.equal("\31\139", z:sub(1, 2))
      assert.equal(text, python("out = gzip.decompress(data)", z))
    end)

    it("inflates zlib data made by Python", function()
      local z = python("out = zlib.compress(data, 9)", text)
      local inf = uv.new_inflate({ format = "zlib" })
      assert.equal(text, inf:write(z))
    end)

    it("a sync flush ends with 00 00 ff ff and flushes all input so far", function()
      local d = uv.new_deflate({ format = "raw", window_bits = 15 })
      local z = d:write("hello hello hello", "sync")
      assert.equal("\0\0\255\255", z:sub(-4))
      local inf = uv.new_inflate({ format = "raw", window_bits = 15 })
      assert.equal("hello hello hello", inf:write(z))
    end)

    it("level 0 stores, level 9 compresses", function()
      local stored = uv.new_deflate({ format = "raw", level = 0 }):write(text, "finish")
      local best = uv.new_deflate({ format = "raw", level = 9 }):write(text, "finish")
      assert.is_true(#stored >= #text)
      assert.is_true(#best < #text // 10)
    end)

    it("inflate past max_output returns nil and EMSGSIZE", function()
      local z = uv.new_deflate({ format = "zlib" }):write(text, "finish")
      local inf = uv.new_inflate({ format = "zlib", max_output = 1000 })
      local out, err = inf:write(z)
      assert.is_nil(out)
      assert.matches("EMSGSIZE", err, 1, true)
    end)

    it("corrupt input returns nil and EINVAL", function()
      local inf = uv.new_inflate({ format = "zlib" })
      local out, err = inf:write("this is not zlib data at all")
      assert.is_nil(out)
      assert.matches("EINVAL", err, 1, true)
    end)

    it("reset starts a new stream", function()
      local d = uv.new_deflate({ format = "zlib" })
      local first = d:write("abc", "finish")
      d:reset()
      local second = d:write("abc", "finish")
      assert.equal(first, second)
      local inf = uv.new_inflate({ format = "zlib" })
      assert.equal("abc", inf:write(first))
      inf:reset()
      assert.equal("abc", inf:write(second))
    end)
  end)
end)
