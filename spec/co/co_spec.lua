-- luvrs.co: tasks, sleep, run, wait_all/any, cancellation and coroutine sockets, on real sockets.
local H = require "helper"
local uv = H.uv
local co = require "luvrs.co"

-- Runs fn in a task and drives the loop until it finishes (deadline `ms`); returns fn's results or
-- raises its error.
local go = H.go

local function ms_since(t0) return (uv.hrtime() - t0) / 1e6 end

-- A plain luv TCP server for the socket specs: on_conn(client, st) for each accepted connection.
local function luv_server(on_conn)
  local st = { accepted = 0, clients = {} }
  local server, port = H.tcp_server(function(srv, err)
    assert(not err, err)
    local c = uv.new_tcp()
    assert(srv:accept(c))
    st.accepted = st.accepted + 1
    st.clients[#st.clients + 1] = c
    on_conn(c, st)
  end)
  st.port = port
  function st.close()
    for _, c in ipairs(st.clients) do
      if not c:is_closing() then c:close() end
    end
    if not server:is_closing() then server:close() end
  end
  return st
end

-- Writes the pieces with `gap` ms between them (to make separate packets), then calls done().
local function write_spaced(c, pieces, gap, done)
  local i = 0
  local t = uv.new_timer()
  t:start(0, gap, function()
    i = i + 1
    c:write(pieces[i])
    if i == #pieces then
      t:close()
      if done then done() end
    end
  end)
end

local function free_port()
  local t = uv.new_tcp()
  assert(t:bind("127.0.0.1", 0))
  local port = t:getsockname().port
  t:close()
  return port
end

describe("luvrs.co", function()
  after_each(H.after_each)

  teardown(function()
    H.run(1000) -- let close callbacks run: luv 1.44 crashes at exit on a listener closed but not yet swept
  end)

  describe("loop selection", function()
    it("uses the loop module already loaded", function()
      assert.equal(uv, co.loop())
    end)

    it("set_loop rejects a non-module", function()
      assert.has_error(function() co.set_loop(42) end,
        "luvrs.co.set_loop: argument 'loop' must be a luv-shaped module table")
      co.set_loop(uv)
      assert.equal(uv, co.loop())
    end)
  end)

  describe("spawn and wait", function()
    it("runs fn at once until it waits, and wait returns its results", function()
      local log = {}
      go(function()
        local t = co.spawn(function(a, b)
          log[#log + 1] = "start"
          co.sleep(10)
          log[#log + 1] = "end"
          return a + b, "x"
        end, 1, 2)
        assert.same({ "start" }, log)
        assert.equal("running", t:status())
        assert.same({ nil, "running" }, { t:result() })
        local ok, sum, x = t:wait()
        assert.is_true(ok)
        assert.equal(3, sum)
        assert.equal("x", x)
        assert.equal("done", t:status())
        assert.same({ "start", "end" }, log)
      end)
    end)

    it("reports a raised error as false, message with traceback", function()
      go(function()
        local t = co.spawn(function()
          co.sleep(1)
          error("boom")
        end)
        local ok, err = t:wait()
        assert.is_false(ok)
        assert.matches("boom", err)
        assert.matches("traceback", err)
        assert.equal("failed", t:status())
        -- a finished task answers at once, again
        assert.is_false((t:wait()))
      end)
    end)

    it("wait gives nil, 'timeout' when the task is slower", function()
      go(function()
        local t = co.spawn(co.sleep, 2000)
        local t0 = uv.hrtime()
        assert.same({ nil, "timeout" }, { t:wait(30) })
        assert.is_true(ms_since(t0) >= 25)
        assert.is_true(t:cancel())
      end)
    end)

    it("reports a failed task nobody looked at when it is collected", function()
      local reported = {}
      co.set_error_handler(function(msg) reported[#reported + 1] = msg end)
      go(function()
        co.spawn(function() co.sleep(1) error("lost error") end)
        local seen = co.spawn(function() co.sleep(1) error("seen error") end)
        co.sleep(20) -- due timers fire in deadline order: both 1 ms tasks have failed by then
        assert.equal("failed", seen:status())
      end)
      collectgarbage()
      collectgarbage()
      co.set_error_handler(function(msg) io.stderr:write(msg, "\n") end)
      assert.equal(1, #reported)
      assert.matches("lost error", reported[1])
    end)

    it("raises for wrong arguments, naming the function and argument", function()
      assert.has_error(function() co.spawn(nil) end, "luvrs.co.spawn: argument 'fn' must be a function (got nil)")
      go(function()
        local t = co.spawn(function() end)
        assert.has_error(function() t:wait(-1) end)
        local ok, err = pcall(t.wait, t, "soon")
        assert.is_false(ok)
        assert.matches("luvrs.co task:wait: argument 'timeout'", err)
      end)
    end)

    it("a task cannot wait for itself", function()
      go(function()
        local me
        me = co.spawn(function()
          co.sleep(1)
          local ok, err = pcall(me.wait, me)
          return ok, err
        end)
        local _, ok, err = me:wait()
        assert.is_false(ok)
        assert.matches("cannot wait for itself", err)
      end)
    end)
  end)

  describe("wait_all and wait_any", function()
    it("wait_all returns every result in order, after the slowest", function()
      go(function()
        local t0 = uv.hrtime()
        local ts = {
          co.spawn(function() co.sleep(60) return "a" end),
          co.spawn(function() co.sleep(10) return "b", 2 end),
          co.spawn(function() co.sleep(30) error("c failed") end),
        }
        local res = co.wait_all(ts)
        local took = ms_since(t0)
        assert.is_true(took >= 55 and took < 1000, "took " .. took)
        assert.same({ true, "a", n = 2 }, res[1])
        assert.same({ true, "b", 2, n = 3 }, res[2])
        assert.is_false(res[3][1])
        assert.matches("c failed", res[3][2])
      end)
    end)

    it("wait_all on finished tasks returns at once; an empty list too", function()
      go(function()
        local t = co.spawn(function() return 1 end)
        assert.same({ { true, 1, n = 2 } }, co.wait_all({ t }))
        assert.same({}, co.wait_all({}))
      end)
    end)

    it("wait_all times out", function()
      go(function()
        local slow = co.spawn(co.sleep, 5000)
        local fast = co.spawn(co.sleep, 1)
        assert.same({ nil, "timeout" }, { co.wait_all({ slow, fast }, 40) })
        assert.equal("done", fast:status())
        slow:cancel()
      end)
    end)

    it("wait_any returns the first task to finish and its result", function()
      go(function()
        local a = co.spawn(function() co.sleep(80) return "a" end)
        local b = co.spawn(function() co.sleep(10) return "b" end)
        local t, ok, v = co.wait_any({ a, b })
        assert.equal(b, t)
        assert.is_true(ok)
        assert.equal("b", v)
        assert.equal("running", a:status())
        assert.same({ nil, "timeout" }, { co.wait_any({ a }, 10) })
        assert.is_true(a:cancel())
      end)
    end)

    it("raise for a non-array or a non-task item", function()
      go(function()
        assert.has_error(function() co.wait_all("x") end,
          "luvrs.co.wait_all: argument 'tasks' must be an array of tasks (got string)")
        assert.has_error(function() co.wait_any({ 1 }) end,
          "luvrs.co.wait_any: argument 'tasks' must be an array of tasks (item 1 is a number)")
        assert.has_error(function() co.wait_any({}) end, "luvrs.co.wait_any: argument 'tasks' must not be empty")
      end)
    end)
  end)

  describe("sleep", function()
    it("suspends for at least ms", function()
      go(function()
        local t0 = uv.hrtime()
        assert.is_true(co.sleep(50))
        local took = ms_since(t0)
        assert.is_true(took >= 45 and took < 1000, "took " .. took)
        assert.is_true(co.sleep(0))
      end)
    end)

    it("lets other tasks run meanwhile", function()
      go(function()
        local order = {}
        local a = co.spawn(function() co.sleep(30) order[#order + 1] = "a" end)
        local b = co.spawn(function() co.sleep(10) order[#order + 1] = "b" end)
        co.wait_all({ a, b })
        assert.same({ "b", "a" }, order)
      end)
    end)

    it("raises outside a coroutine and for a bad duration", function()
      assert.has_error(function() co.sleep(1) end,
        "luvrs.co.sleep: must be called from a coroutine (use co.run, co.spawn or a server request)")
      go(function()
        assert.has_error(function() co.sleep(-5) end,
          "luvrs.co.sleep: argument 'ms' must be a non-negative number of milliseconds (got number)")
        assert.has_error(function() co.sleep("1") end,
          "luvrs.co.sleep: argument 'ms' must be a non-negative number of milliseconds (got string)")
      end)
    end)
  end)

  describe("cancel", function()
    it("stops a sleeping task, releases its timer and runs its to-be-closed variables", function()
      local closed = false
      go(function()
        local t = co.spawn(function()
          local _ <close> = setmetatable({}, { __close = function() closed = true end })
          co.sleep(10000)
          error("not reached")
        end)
        assert.equal(1, #H.unclosed()) -- the sleep timer
        assert.is_true(t:cancel())
        assert.equal("cancelled", t:status())
        assert.same({ false, "cancelled" }, { t:wait() })
        assert.is_true(closed)
        assert.equal(0, #H.unclosed())
        assert.is_false(t:cancel())
      end)
    end)

    it("wakes tasks waiting on the cancelled task", function()
      go(function()
        local t = co.spawn(co.sleep, 10000)
        local w = co.spawn(function() return t:wait() end) -- spawn runs w until it waits on t
        t:cancel()
        assert.same({ true, false, "cancelled" }, { w:wait(1000) })
      end)
    end)

    it("stops a task waiting on another task without disturbing that task", function()
      go(function()
        local inner = co.spawn(function() co.sleep(20) return "inner" end)
        local outer = co.spawn(function() return inner:wait() end)
        outer:cancel()
        assert.same({ true, "inner" }, { inner:wait() })
      end)
    end)

    it("a task cannot cancel itself", function()
      go(function()
        local t
        t = co.spawn(function()
          co.sleep(1)
          return pcall(t.cancel, t)
        end)
        local _, ok, err = t:wait()
        assert.is_false(ok)
        assert.matches("cannot cancel itself", err)
      end)
    end)

    it("cancelling a task that is not waiting on luvrs.co stops it at its next operation", function()
      go(function()
        local reached = false
        local parent = co.spawn(function()
          -- the child runs inside the parent's resume: the parent is "normal" when it is cancelled
          local me = co.current()
          co.spawn(function() me:cancel() end)
          co.sleep(1)
          reached = true
        end)
        assert.equal("running", parent.state)
        assert.same({ false, "cancelled" }, { parent:wait(1000) })
        assert.is_false(reached)
      end)
    end)
  end)

  describe("run", function()
    it("runs the loop until fn returns, and returns its results", function()
      local a, b = co.run(function(x)
        co.sleep(5)
        return x * 2, "ok"
      end, 21)
      assert.equal(42, a)
      assert.equal("ok", b)
    end)

    it("raises fn's error", function()
      assert.has_error(function()
        co.run(function()
          co.sleep(1)
          error("bad thing", 0)
        end)
      end)
      local ok, err = pcall(co.run, function() error("bad thing") end)
      assert.is_false(ok)
      assert.matches("bad thing", err)
    end)

    it("raises when fn waits on something that can never happen", function()
      local ok, err = pcall(co.run, function()
        local t = co.spawn(function() coroutine.yield() end) -- suspended outside luvrs.co
        t:wait()
      end)
      assert.is_false(ok)
      assert.matches("nothing left to do", err)
    end)

    it("cannot be nested", function()
      local ok, err = pcall(co.run, function() co.run(function() end) end)
      assert.is_false(ok)
      assert.matches("luvrs.co.run: already running", err)
    end)
  end)

  describe("sockets", function()
    it("connects, writes, and read(n) returns at most n bytes", function()
      local srv = luv_server(function(c)
        c:read_start(function(err, data)
          if data then c:write("echo:" .. data) end
          if err or not data then c:close() end
        end)
      end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.is_true(s:write("hello world"))
        assert.equal("echo:", s:read_exactly(5))
        assert.equal("hel", s:read(3))
        assert.equal("lo world", s:read(100))
        assert.equal(srv.port, s:getpeername().port)
        assert.equal("127.0.0.1", s:getsockname().ip)
        assert.is_true(s:close())
        assert.same({ nil, "closed" }, { s:close() })
        assert.same({ nil, "closed" }, { s:read() })
        assert.same({ nil, "closed" }, { s:write("x") })
      end)
      srv.close()
    end)

    it("resolves host names without blocking (localhost)", function()
      local srv = luv_server(function(c) c:write("hi") c:close() end)
      go(function()
        local s = assert(co.tcp_connect("localhost", srv.port))
        assert.equal("hi", s:read_all())
        s:close()
        local bad, err = co.tcp_connect("no-such-host.invalid", 80, { timeout = 3000 })
        assert.is_nil(bad)
        assert.is_string(err)
        assert.matches("^EAI_", err)
      end)
      srv.close()
    end)

    it("returns the luv error name when the connection is refused", function()
      local port = free_port()
      go(function()
        assert.same({ nil, "ECONNREFUSED" }, { co.tcp_connect("127.0.0.1", port) })
      end)
    end)

    it("connect times out (listen queue full) and releases the attempt", function()
      local server = uv.new_tcp()
      assert(server:bind("127.0.0.1", 0))
      assert(server:listen(1, function() end)) -- never accepts: the kernel queues two, drops the rest
      local port = server:getsockname().port
      go(function()
        local held = {}
        local timed_out = 0
        for _ = 1, 4 do
          local t0 = uv.hrtime()
          local s, err = co.tcp_connect("127.0.0.1", port, { timeout = 150 })
          if s then
            held[#held + 1] = s
          else
            assert.equal("timeout", err)
            local took = ms_since(t0)
            assert.is_true(took >= 140 and took < 1500, "took " .. took)
            timed_out = timed_out + 1
          end
        end
        assert.is_true(timed_out >= 1)
        for _, s in ipairs(held) do s:close() end
      end)
      server:close()
    end)

    it("connect raises for wrong arguments", function()
      go(function()
        assert.has_error(function() co.tcp_connect(nil, 80) end,
          "luvrs.co.tcp_connect: argument 'host' must be a non-empty string (got nil)")
        assert.has_error(function() co.tcp_connect("127.0.0.1", 0) end,
          "luvrs.co.tcp_connect: argument 'port' must be an integer from 1 to 65535 (got number)")
        assert.has_error(function() co.tcp_connect("127.0.0.1", "80") end,
          "luvrs.co.tcp_connect: argument 'port' must be an integer from 1 to 65535 (got string)")
        assert.has_error(function() co.tcp_connect("127.0.0.1", 80, { timeout = -1 }) end)
        assert.has_error(function() co.unix_connect(7) end,
          "luvrs.co.unix_connect: argument 'path' must be a non-empty string (got number)")
      end)
      assert.has_error(function() co.tcp_connect("127.0.0.1", 80) end,
        "luvrs.co.tcp_connect: must be called from a coroutine (use co.run, co.spawn or a server request)")
    end)

    it("read times out, and the socket stays usable", function()
      local conn
      local srv = luv_server(function(c) conn = c end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        s:settimeout(nil, nil, 50)
        local t0 = uv.hrtime()
        assert.same({ nil, "timeout" }, { s:read() })
        assert.is_true(ms_since(t0) >= 45)
        assert.same({ nil, "timeout" }, { s:read_until("\n") })
        assert.same({ nil, "timeout" }, { s:read_exactly(3) })
        conn:write("late\n")
        s:settimeout(1000)
        assert.equal("late", s:read_until("\n"))
        s:close()
      end)
      srv.close()
    end)

    it("write times out when the peer does not read (send timeout)", function()
      local srv = luv_server(function() end) -- accepts, never reads
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        s:settimeout(1000, 100, 1000)
        local chunk = string.rep("x", 1024 * 1024)
        local err
        for _ = 1, 256 do
          local ok
          ok, err = s:write(chunk)
          if not ok then break end
        end
        assert.equal("timeout", err)
        assert.is_true(uv.stream_get_write_queue_size(s.handle) > co.HIGH_WATER)
        s:close()
      end, 10000)
      srv.close()
    end)

    it("returns ECONNRESET when the peer resets the connection in the middle of a read", function()
      local srv = luv_server(function(c)
        c:write("partial")
        -- closing with the client's bytes unread makes the kernel send RST instead of FIN
        local t = uv.new_timer()
        t:start(50, 0, function()
          t:close()
          c:close()
        end)
      end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert(s:write("unread by the server"))
        local data, err, partial = s:read_exactly(100)
        assert.is_nil(data)
        assert.equal("ECONNRESET", err)
        assert.equal("partial", partial)
        assert.same({ nil, "ECONNRESET" }, { s:read() })
        s:close()
      end)
      srv.close()
    end)

    it("read_until finds a delimiter split across packets", function()
      local srv = luv_server(function(c)
        write_spaced(c, { "abc\r", "\n\r", "\nrow2--X", "Y", "Z--tail" }, 15, function() c:close() end)
      end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.equal("abc", s:read_until("\r\n\r\n"))
        assert.equal("row2", s:read_until("--XYZ--"))
        assert.same({ nil, "closed", "tail" }, { s:read_until("\n") })
        s:close()
      end)
      srv.close()
    end)

    it("read_until handles a stream arriving one byte per packet", function()
      local text = "key: value\r\nsecond\r\n"
      local pieces = {}
      for i = 1, #text do pieces[i] = text:sub(i, i) end
      local srv = luv_server(function(c) write_spaced(c, pieces, 2) end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.equal("key: value\r\n", s:read_until("\r\n", { inclusive = true }))
        assert.equal("second", s:read_until("\r\n"))
        s:close()
      end)
      srv.close()
    end)

    it("read_until stops at opts.max with EMSGSIZE", function()
      local srv = luv_server(function(c) c:write(string.rep("a", 100) .. "\n") end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.same({ nil, "EMSGSIZE" }, { s:read_until("\n", { max = 10 }) })
        assert.equal(string.rep("a", 100), s:read_until("\n", { max = 100 }))
        assert.has_error(function() s:read_until("") end,
          "luvrs.co sock:read_until: argument 'delimiter' must be a non-empty string (got string)")
        assert.has_error(function() s:read_until("\n", { max = 0 }) end)
        s:close()
      end)
      srv.close()
    end)

    it("read_exactly and read_all", function()
      local srv = luv_server(function(c)
        write_spaced(c, { "01234", "56789", "rest" }, 10, function() c:close() end)
      end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.equal("0123456789", s:read_exactly(10))
        assert.equal("", s:read_exactly(0))
        assert.same({ nil, "closed", "rest" }, { s:read_exactly(10) })
        assert.equal("", s:read_all())
        s:close()
      end)
      go(function()
        local srv2 = assert(co.tcp_listen("127.0.0.1", 0, function(c) c:write(string.rep("z", 5000)) end))
        local s = assert(co.tcp_connect("127.0.0.1", srv2.port))
        assert.same({ nil, "EMSGSIZE" }, { s:read_all({ max = 100 }) })
        assert.equal(5000, #s:read_all())
        s:close()
        srv2:close()
      end)
      srv.close()
    end)

    it("stops reading past the high-water mark until the reader catches up", function()
      local big = string.rep("b", 1024 * 1024)
      local srv = luv_server(function(c) c:write(big, function() c:close() end) end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        co.sleep(100)
        assert.is_true(s:buffered() < 2 * co.HIGH_WATER + 65536, "buffered " .. s:buffered())
        assert.equal(#big, #s:read_all())
        s:close()
      end)
      srv.close()
    end)

    it("writes arrays, flushes and shuts down the sending side", function()
      local srv = luv_server(function(c)
        local got = {}
        c:read_start(function(err, data)
          if data then
            got[#got + 1] = data
          else
            assert(not err, err)
            c:write("got:" .. table.concat(got), function() c:close() end)
          end
        end)
      end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.is_true(s:write({ "a", "bc", "" }))
        assert.is_true(s:write({}))
        assert.is_true(s:write("d"))
        assert.is_true(s:flush())
        assert.is_true(s:shutdown())
        assert.equal("got:abcd", s:read_all())
        s:close()
        assert.has_error(function() s:write(42) end,
          "luvrs.co sock:write: argument 'data' must be a string or an array of strings (got number)")
        assert.has_error(function() s:write({ "a", 1 }) end,
          "luvrs.co sock:write: argument 'data' must be a string or an array of strings (item 2 is a number)")
      end)
      srv.close()
    end)

    it("close wakes a coroutine blocked in read with nil, 'closed'", function()
      local srv = luv_server(function() end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        local reader = co.spawn(function() return s:read() end) -- blocked in read when spawn returns
        assert.equal("running", reader:status())
        s:close()
        assert.same({ true, nil, "closed" }, { reader:wait(1000) })
      end)
      srv.close()
    end)

    it("a second concurrent reader is an error", function()
      local srv = luv_server(function() end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        local reader = co.spawn(function() return s:read() end)
        assert.has_error(function() s:read() end,
          "luvrs.co sock:read: another coroutine is already reading this socket")
        s:close()
        reader:wait()
      end)
      srv.close()
    end)

    it("settimeout checks its arguments", function()
      local srv = luv_server(function() end)
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        assert.has_error(function() s:settimeout(-1) end)
        assert.has_error(function() s:settimeout(nil, "x") end,
          "luvrs.co sock:settimeout: argument 'send' must be a non-negative number of milliseconds (got string)")
        assert.is_true(s:settimeout(10, 20, 30))
        assert.same({ connect = 10, send = 20, read = 30 }, s.timeouts)
        s:settimeout(nil, nil, 5)
        assert.same({ connect = 10, send = 20, read = 5 }, s.timeouts)
        s:settimeout(7)
        assert.same({ connect = 7, send = 7, read = 7 }, s.timeouts)
        assert.has_error(function() s.read(nil) end)
        s:close()
      end)
      srv.close()
    end)

    it("cancelling a task blocked in read closes its socket and read timer", function()
      local peer_eof = false
      local srv = luv_server(function(c)
        c:read_start(function(_, data)
          if not data then
            peer_eof = true
            c:close()
          end
        end)
      end)
      go(function()
        local sock
        local t = co.spawn(function()
          sock = assert(co.tcp_connect("127.0.0.1", srv.port))
          sock:settimeout(nil, nil, 10000)
          return sock:read()
        end)
        -- sock is set in the same resumption that then blocks in read
        while not sock do co.sleep(1) end
        assert.is_true(t:cancel())
        assert.is_true(sock.closed)
        assert.equal("cancelled", t:status())
        while not peer_eof do co.sleep(1) end
      end)
      srv.close()
    end)

    it("cancelling a task blocked in connect releases the attempt and its timer", function()
      local server = uv.new_tcp()
      assert(server:bind("127.0.0.1", 0))
      assert(server:listen(1, function() end))
      local port = server:getsockname().port
      go(function()
        local held, pending = {}, nil
        for _ = 1, 4 do
          local t = co.spawn(co.tcp_connect, "127.0.0.1", port, { timeout = 10000 })
          co.sleep(20)
          if t:status() == "running" then
            pending = t
            break
          end
          local _, s = t:result()
          held[#held + 1] = s
        end
        assert.is_truthy(pending, "a connect should be left waiting on the full listen queue")
        local before = #H.unclosed()
        assert.is_true(pending:cancel())
        assert.equal(before - 2, #H.unclosed()) -- its tcp handle and its timeout timer
        for _, s in ipairs(held) do s:close() end
      end)
      server:close()
    end)

    it("cancelling a task blocked in write releases its send timer and closes its socket", function()
      local srv = luv_server(function() end) -- never reads
      go(function()
        local sock
        local t = co.spawn(function()
          sock = assert(co.tcp_connect("127.0.0.1", srv.port))
          local chunk = string.rep("w", 1024 * 1024)
          for _ = 1, 256 do assert(sock:write(chunk)) end
        end)
        local t0 = uv.hrtime()
        while not (sock and #sock.wwait > 0) and uv.hrtime() - t0 < 3e9 do co.sleep(5) end
        assert.equal(1, #sock.wwait)
        assert.is_true(t:cancel())
        assert.is_true(sock.closed)
        assert.equal(0, #sock.wwait)
      end)
      srv.close()
    end)

    it("connects to Unix domain sockets", function()
      local path = os.tmpname()
      os.remove(path)
      local server = assert(co.unix_listen(path, function(s)
        local line = s:read_until("\n")
        s:write("unix:" .. line)
      end))
      go(function()
        local s = assert(co.unix_connect(path))
        s:write("hi\n")
        assert.equal("unix:hi", s:read_all())
        s:close()
        assert.same({ nil, "ENOENT" }, { co.unix_connect(path .. ".missing") })
      end)
      server:close()
      os.remove(path)
    end)
  end)

  describe("tcp_listen", function()
    it("runs one task per connection", function()
      local active, peak = 0, 0
      local server = assert(co.tcp_listen("127.0.0.1", 0, function(s)
        active = active + 1
        peak = math.max(peak, active)
        local line = s:read_until("\n")
        co.sleep(20)
        s:write("re:" .. line)
        active = active - 1
      end))
      assert.is_true(server.port > 0)
      go(function()
        local ts = {}
        for i = 1, 5 do
          ts[i] = co.spawn(function()
            local s = assert(co.tcp_connect("127.0.0.1", server.port))
            s:write("n" .. i .. "\n")
            local r = s:read_all()
            s:close()
            return r
          end)
        end
        local res = co.wait_all(ts)
        for i = 1, 5 do assert.same({ true, "re:n" .. i, n = 2 }, res[i]) end
      end)
      assert.equal(5, peak)
      server:close()
    end)

    it("reports a handler error to the error handler and closes the connection", function()
      local reported
      co.set_error_handler(function(msg) reported = msg end)
      local server = assert(co.tcp_listen("127.0.0.1", 0, function(s)
        s:read_until("\n")
        error("handler broke")
      end))
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", server.port))
        s:write("x\n")
        assert.equal("", s:read_all())
        s:close()
      end)
      co.set_error_handler(function(msg) io.stderr:write(msg, "\n") end)
      assert.matches("handler broke", reported)
      server:close()
    end)

    it("returns EADDRINUSE for a taken port; close(true) cancels connection tasks", function()
      local server = assert(co.tcp_listen("127.0.0.1", 0, function(s) s:read() end))
      assert.same({ nil, "EADDRINUSE" }, { co.tcp_listen("127.0.0.1", server.port, function() end) })
      go(function()
        local s = assert(co.tcp_connect("127.0.0.1", server.port))
        co.sleep(10)
        assert.is_true(server:close(true))
        assert.same({ nil, "closed" }, { s:read() })
        s:close()
        assert.same({ nil, "ECONNREFUSED" }, { co.tcp_connect("127.0.0.1", server.port) })
      end)
      assert.same({ nil, "closed" }, { server:close() })
      assert.has_error(function() co.tcp_listen("127.0.0.1", 0, "nope") end,
        "luvrs.co.tcp_listen: argument 'handler' must be a function (got string)")
    end)
  end)
end)
