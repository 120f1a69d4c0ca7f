-- The file-system calls a server and its reloader need: fs_stat, fs_lstat, fs_realpath, fs_chmod, fs_unlink,
-- fs_mkdir, fs_rmdir, fs_rename, fs_scandir and fs_scandir_next.
local H = require "helper"
local uv = H.uv
local fixtures = require "fixtures"

describe("fs", function()
  after_each(H.after_each)

  local tmpfile = fixtures.tmpfile

  it("fs_stat describes a file: type, size, mode and times", function()
    local path = tmpfile("hello")
    local st = assert(uv.fs_stat(path))
    assert.equal("file", st.type)
    assert.equal(5, st.size)
    assert.equal("number", type(st.mode))
    assert.equal("number", type(st.mtime.sec))
    assert.equal("number", type(st.mtime.nsec))
    assert.is_true(math.abs(st.mtime.sec - os.time()) < 60)
    assert.equal("directory", uv.fs_stat("/").type)
    os.remove(path)
  end)

  it("fs_stat of a missing path returns the ENOENT triple with the path", function()
    assert.same({ nil, "ENOENT: no such file or directory: /nonexistent-luvrs", "ENOENT" },
      { uv.fs_stat("/nonexistent-luvrs") })
  end)

  it("fs_stat with a callback reports on a later tick", function()
    local path = tmpfile("abc")
    local got
    local req = uv.fs_stat(path, H.expect(function(err, st) got = { err = err, size = st and st.size } end))
    assert.matches("^uv_fs_t: ", tostring(req))
    assert.is_nil(got)
    H.run()
    assert.same({ size = 3 }, got)
    uv.fs_stat("/nonexistent-luvrs", H.expect(function(err, st)
      assert.matches("^ENOENT", err)
      assert.is_nil(st)
    end))
    H.run()
    os.remove(path)
  end)

  it("fs_lstat sees a symlink, fs_stat and fs_realpath follow it", function()
    local target = tmpfile("x")
    local link = target .. ".link"
    os.execute(("ln -s %q %q"):format(target, link))
    assert.equal("link", uv.fs_lstat(link).type)
    assert.equal("file", uv.fs_stat(link).type)
    assert.equal(uv.fs_realpath(target), uv.fs_realpath(link))
    assert.equal("/usr/lib", uv.fs_realpath("/usr/bin/../lib"))
    os.remove(link)
    os.remove(target)
  end)

  it("fs_chmod sets the mode and fs_unlink removes the file", function()
    local path = tmpfile("x")
    assert.is_truthy(uv.fs_chmod(path, tonumber("640", 8)))
    assert.equal(tonumber("640", 8), uv.fs_stat(path).mode & tonumber("777", 8))
    assert.is_truthy(uv.fs_unlink(path))
    assert.is_nil(uv.fs_stat(path))
    assert.matches("^ENOENT", select(2, uv.fs_unlink(path)))
  end)

  it("bad arguments raise errors naming the function", function()
    local ok, err = pcall(uv.fs_stat, {})
    assert.is_false(ok)
    assert.matches("fs_stat", err, 1, true)
    ok, err = pcall(uv.fs_chmod, "/tmp", "rw")
    assert.is_false(ok)
    assert.matches("fs_chmod", err, 1, true)
  end)
end)

describe("fs directories", function()
  after_each(H.after_each)

  local tmpdir, write, rm_tree = fixtures.tmpdir, fixtures.write, fixtures.rm_tree

  -- Every entry of a scandir request, as "name=type" strings in the order they came.
  local function drain(req)
    local out = {}
    while true do
      local name, kind = uv.fs_scandir_next(req)
      if not name then break end
      out[#out + 1] = name .. "=" .. tostring(kind)
    end
    return out
  end

  it("fs_mkdir creates a directory with the mode, fs_rmdir removes it", function()
    local dir = tmpdir()
    local sub = dir .. "/sub"
    assert.equal(true, uv.fs_mkdir(sub, tonumber("700", 8)))
    local st = assert(uv.fs_stat(sub))
    assert.equal("directory", st.type)
    assert.equal(tonumber("700", 8), st.mode & tonumber("777", 8))
    assert.same({ nil, "EEXIST: file already exists: " .. sub, "EEXIST" }, { uv.fs_mkdir(sub, 493) })
    assert.same({ nil, "ENOENT: no such file or directory: " .. dir .. "/a/b", "ENOENT" },
      { uv.fs_mkdir(dir .. "/a/b", 493) })
    assert.equal(true, uv.fs_rmdir(sub))
    assert.is_nil(uv.fs_stat(sub))
    assert.same({ nil, "ENOENT: no such file or directory: " .. sub, "ENOENT" }, { uv.fs_rmdir(sub) })
    write(sub, "x")
    assert.same({ nil, "ENOTDIR: not a directory: " .. sub, "ENOTDIR" }, { uv.fs_rmdir(sub) })
    assert.same({ nil, "ENOTEMPTY: directory not empty: " .. dir, "ENOTEMPTY" }, { uv.fs_rmdir(dir) })
    rm_tree(dir)
  end)

  it("fs_rename moves files and directories; a failure names both paths", function()
    local dir = tmpdir()
    write(dir .. "/a", "abc")
    assert.equal(true, uv.fs_rename(dir .. "/a", dir .. "/b"))
    assert.is_nil(uv.fs_stat(dir .. "/a"))
    assert.equal(3, uv.fs_stat(dir .. "/b").size)
    assert.equal(true, uv.fs_mkdir(dir .. "/d", 493))
    assert.equal(true, uv.fs_rename(dir .. "/d", dir .. "/e"))
    assert.equal("directory", uv.fs_stat(dir .. "/e").type)
    local a, b = dir .. "/missing", dir .. "/c"
    assert.same({ nil, "ENOENT: no such file or directory: " .. a .. " -> " .. b, "ENOENT" },
      { uv.fs_rename(a, b) })
    rm_tree(dir)
  end)

  it("fs_scandir lists names in byte order with their types, links not followed", function()
    local dir = tmpdir()
    write(dir .. "/b.lua", "x")
    write(dir .. "/a file", "")
    write(dir .. "/\xc3\xa9t\xc3\xa9", "")
    assert(uv.fs_mkdir(dir .. "/Sub", 493))
    assert(os.execute(("ln -s %q %q"):format(dir .. "/Sub", dir .. "/link")))
    assert(os.execute(("ln -s %q %q"):format(dir .. "/nowhere", dir .. "/dangling")))
    assert(os.execute(("mkfifo %q"):format(dir .. "/fifo")))
    local pipe = uv.new_pipe(false)
    assert(pipe:bind(dir .. "/sock"))
    local req = assert(uv.fs_scandir(dir))
    assert.equal("userdata", type(req))
    assert.matches("^uv_fs_t: ", tostring(req))
    assert.same({ "Sub=directory", "a file=file", "b.lua=file", "dangling=link", "fifo=fifo", "link=link",
      "sock=socket", "\xc3\xa9t\xc3\xa9=file" }, drain(req))
    H.close_all(pipe)
    rm_tree(dir)
  end)

  it("fs_scandir_next returns no values at all once done, also for an empty directory", function()
    local dir = tmpdir()
    local req = assert(uv.fs_scandir(dir))
    assert.equal(0, select("#", uv.fs_scandir_next(req)))
    write(dir .. "/only", "")
    req = assert(uv.fs_scandir(dir))
    assert.same({ "only", "file" }, { uv.fs_scandir_next(req) })
    assert.equal(0, select("#", uv.fs_scandir_next(req)))
    assert.equal(0, select("#", uv.fs_scandir_next(req)))
    rm_tree(dir)
  end)

  it("names that are not UTF-8 come back as their bytes and work as paths", function()
    local dir = tmpdir()
    local name = "\xff\xfe.lua"
    write(dir .. "/" .. name, "abc")
    assert.same({ name, "file" }, { uv.fs_scandir_next(assert(uv.fs_scandir(dir))) })
    assert.equal(3, assert(uv.fs_stat(dir .. "/" .. name)).size)
    assert.equal(true, uv.fs_rename(dir .. "/" .. name, dir .. "/\xfd"))
    assert.equal(true, uv.fs_mkdir(dir .. "/\xfc", 493))
    assert.equal(true, uv.fs_rmdir(dir .. "/\xfc"))
    assert.equal(true, uv.fs_unlink(dir .. "/\xfd"))
    assert.equal(true, uv.fs_rmdir(dir))
  end)

  it("fs_scandir reports character devices", function()
    local found
    for name, kind in uv.fs_scandir_next, assert(uv.fs_scandir("/dev")) do
      if name == "null" then found = kind end
    end
    assert.equal("char", found)
  end)

  it("fs_scandir of a missing path or a file returns the triple with the path", function()
    local file = os.tmpname()
    assert.same({ nil, "ENOENT: no such file or directory: /nonexistent-luvrs", "ENOENT" },
      { uv.fs_scandir("/nonexistent-luvrs") })
    assert.same({ nil, "ENOTDIR: not a directory: " .. file, "ENOTDIR" }, { uv.fs_scandir(file) })
    os.remove(file)
  end)

  it("fs_scandir with a callback returns the request and passes it to the callback", function()
    local dir = tmpdir()
    write(dir .. "/x", "")
    local listed, failed
    local req = uv.fs_scandir(dir, H.expect(function(err, r)
      assert.is_nil(err)
      listed = drain(r)
    end))
    assert.equal("userdata", type(req))
    assert.is_nil(listed)
    local req2 = uv.fs_scandir(dir .. "/nope", H.expect(function(err, r)
      failed = { err, r }
    end))
    assert.equal("userdata", type(req2))
    H.run()
    assert.same({ "x=file" }, listed)
    assert.same({ "ENOENT: no such file or directory: " .. dir .. "/nope" }, failed)
    rm_tree(dir)
  end)

  it("fs_mkdir, fs_rename and fs_rmdir with a callback report on a later tick", function()
    local dir = tmpdir()
    local log = {}
    local function note(tag)
      return H.expect(function(err, ok) log[#log + 1] = tag .. ":" .. tostring(err) .. ":" .. tostring(ok) end)
    end
    assert.equal("userdata", type(uv.fs_mkdir(dir .. "/m", 493, note("mkdir"))))
    assert.same({}, log)
    H.run()
    assert.equal("userdata", type(uv.fs_rename(dir .. "/m", dir .. "/n", note("rename"))))
    H.run()
    assert.equal("userdata", type(uv.fs_rmdir(dir .. "/n", note("rmdir"))))
    H.run()
    uv.fs_rmdir(dir .. "/n", note("again"))
    H.run()
    assert.same({ "mkdir:nil:true", "rename:nil:true", "rmdir:nil:true",
      "again:ENOENT: no such file or directory: " .. dir .. "/n:nil" }, log)
    rm_tree(dir)
  end)

  it("bad arguments raise errors naming the function and the argument", function()
    for _, case in ipairs({
      { uv.fs_scandir, { {} }, "fs_scandir", "#1" },
      { uv.fs_scandir, { "/", 5 }, "fs_scandir", "#2" },
      { uv.fs_scandir_next, { {} }, "fs_scandir_next", "#1" },
      { uv.fs_scandir_next, { "/tmp" }, "fs_scandir_next", "#1" },
      { uv.fs_mkdir, { "/tmp/luvrs-never", nil }, "fs_mkdir", "#2" },
      { uv.fs_mkdir, { "/tmp/luvrs-never", "rwx" }, "fs_mkdir", "#2" },
      { uv.fs_rmdir, { {} }, "fs_rmdir", "#1" },
      { uv.fs_rename, { "/tmp/luvrs-never" }, "fs_rename", "#2" },
    }) do
      local ok, err = pcall(case[1], table.unpack(case[2], 1, 2))
      assert.is_false(ok)
      assert.matches(case[3], err, 1, true)
      assert.matches("bad argument " .. case[4], err, 1, true)
    end
  end)
end)
