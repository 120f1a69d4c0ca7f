-- Handle methods shared by every handle type: close, is_active, is_closing, ref/unref/has_ref,
-- get_type, fileno, buffer sizes, __tostring, __close, __gc.
local H = require "helper"
local uv = H.uv

-- libuv's uv_handle_type numbers, which luv returns next to the type name.
local TYPES = {
  { "new_timer", "timer", 13, "uv_timer_t" },
  { "new_idle", "idle", 6, "uv_idle_t" },
  { "new_check", "check", 2, "uv_check_t" },
  { "new_prepare", "prepare", 9, "uv_prepare_t" },
  { "new_tcp", "tcp", 12, "uv_tcp_t" },
}

describe("handle", function()
  after_each(H.after_each)

  describe("close", function()
    it("returns nothing and runs the callback, with no arguments, on a later iteration", function()
      local t = uv.new_timer()
      local log = {}
      assert.equal(0, select("#", t:close(H.expect(function(...)
        log[#log + 1] = "closed:" .. select("#", ...)
      end))))
      log[#log + 1] = "returned"
      assert.is_true(t:is_closing())
      H.run()
      assert.same({ "returned", "closed:0" }, log)
    end)

    it("works without a callback and in function form", function()
      local t = uv.new_timer()
      assert.equal(0, select("#", uv.close(t)))
      assert.is_true(t:is_closing())
      H.run()
    end)

    -- libuv keeps closing handles in a list it pushes onto, so close callbacks run newest first
    it("close callbacks run after the other callbacks of the iteration, last closed first", function()
      local log = {}
      local a, b, c = uv.new_timer(), uv.new_idle(), uv.new_check()
      local idle = uv.new_idle()
      b:close(function() log[#log + 1] = "b" end)
      a:close(function() log[#log + 1] = "a" end)
      c:close(function() log[#log + 1] = "c" end)
      idle:start(function()
        log[#log + 1] = "idle"
        idle:close(function() log[#log + 1] = "idle closed" end)
      end)
      H.run()
      assert.same({ "idle", "idle closed", "c", "a", "b" }, log)
    end)

    it("closing a handle twice raises an error", function()
      local t = uv.new_timer()
      t:close()
      local ok, err = pcall(t.close, t)
      assert.is_false(ok)
      assert.matches("already closing", err, 1, true)
      H.run()
    end)

    it("a closed handle can still be inspected", function()
      local t = uv.new_timer()
      t:close()
      H.run()
      assert.is_false(t:is_active())
      assert.is_true(t:is_closing())
      assert.equal("timer", (t:get_type()))
      assert.matches("^uv_timer_t: ", tostring(t))
    end)

    it("starting a closed timer returns the EINVAL triple", function()
      local t = uv.new_timer()
      t:close()
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { t:start(1, 0, function() end) })
      H.run()
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { t:start(1, 0, function() end) })
    end)

    it("a handle can be closed inside its own callback (idle)", function()
      local idle = uv.new_idle()
      local n = 0
      idle:start(H.expect(function()
        n = n + 1
        idle:close(H.expect())
      end))
      H.run()
      assert.equal(1, n)
    end)
  end)

  describe("callbacks", function()
    -- luv takes any callable: a function or a table with __call (called with the table first)
    it("may be callable tables: timer_start, idle_start, close", function()
      local seen = {}
      local function callable(name, after)
        return setmetatable({}, { __call = function(self, ...)
          seen[name] = type(self) .. ":" .. select("#", ...)
          if after then after() end
        end })
      end
      local t, idle = uv.new_timer(), uv.new_idle()
      assert.equal(0, t:start(1, 0, callable("timer")))
      assert.equal(0, idle:start(callable("idle", function() idle:stop() end)))
      H.run()
      t:close(callable("close"))
      idle:close()
      H.run()
      assert.same({ timer = "table:0", idle = "table:0", close = "table:0" }, seen)
    end)
  end)

  describe("is_active / is_closing", function()
    it("track start, stop and close", function()
      local t = uv.new_timer()
      assert.is_false(t:is_active())
      assert.is_false(uv.is_active(t))
      assert.is_false(t:is_closing())
      t:start(1000, 0, function() end)
      assert.is_true(t:is_active())
      t:stop()
      assert.is_false(t:is_active())
      t:start(1000, 0, function() end)
      t:close()
      assert.is_false(t:is_active())
      assert.is_true(uv.is_closing(t))
      H.run()
    end)
  end)

  describe("ref / unref / has_ref", function()
    it("a new handle is referenced; unref and ref return nothing", function()
      local t = uv.new_timer()
      assert.is_true(t:has_ref())
      assert.equal(0, select("#", t:unref()))
      assert.is_false(t:has_ref())
      assert.is_false(uv.has_ref(t))
      assert.equal(0, select("#", uv.ref(t)))
      assert.is_true(t:has_ref())
      t:close()
      H.run()
    end)

    it("an unreferenced active handle does not keep run() going; ref makes it count again", function()
      local t = uv.new_timer()
      local fired = 0
      t:start(5, 0, function() fired = fired + 1 end)
      t:unref()
      assert.is_false(uv.run())
      assert.equal(0, fired)
      t:ref()
      assert.is_false(uv.run())
      assert.equal(1, fired)
      t:close()
      H.run()
    end)
  end)

  describe("get_type", function()
    for _, row in ipairs(TYPES) do
      local ctor, name, num, prefix = row[1], row[2], row[3], row[4]
      it(ctor .. " → " .. name .. ", " .. num .. ", tostring prefix " .. prefix, function()
        local h = uv[ctor]()
        local a, b = h:get_type()
        assert.equal(name, a)
        assert.equal(num, b)
        local c, d = uv.handle_get_type(h)
        assert.equal(name, c)
        assert.equal(num, d)
        assert.matches("^" .. prefix .. ": 0x%x+$", tostring(h))
        h:close()
        H.run()
      end)
    end
  end)

  describe("fileno", function()
    it("is EBADF on a socket-less tcp handle and EINVAL on a timer", function()
      local tcp, t = uv.new_tcp(), uv.new_timer()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { tcp:fileno() })
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.fileno(t) })
      tcp:close()
      t:close()
      H.run()
    end)

    it("is the socket's descriptor once bound", function()
      local tcp = uv.new_tcp()
      assert.equal(0, tcp:bind("127.0.0.1", 0))
      local fd = tcp:fileno()
      assert.equal("number", type(fd))
      assert.is_true(fd > 2)
      local p = io.popen(("readlink /proc/%d/fd/%d"):format(uv.os_getpid(), fd))
      local target = p:read("*a")
      p:close()
      assert.matches("^socket:", target)
      tcp:close()
      H.run()
    end)
  end)

  describe("buffer sizes", function()
    it("send_buffer_size/recv_buffer_size read with no size and set with one", function()
      local tcp = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { tcp:send_buffer_size() })
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { uv.recv_buffer_size(tcp) })
      tcp:bind("127.0.0.1", 0)
      local s, r = tcp:send_buffer_size(), tcp:recv_buffer_size()
      assert.is_true(s > 0)
      assert.is_true(r > 0)
      assert.equal(0, tcp:send_buffer_size(65536))
      assert.equal(0, uv.recv_buffer_size(tcp, 65536))
      -- Linux doubles the requested size to leave room for its bookkeeping
      assert.equal(131072, tcp:send_buffer_size())
      assert.equal(131072, tcp:recv_buffer_size())
      tcp:close()
      H.run()
    end)
  end)

  describe("metatables", function()
    it("carry __name, and the handle and type methods", function()
      local t, tcp = uv.new_timer(), uv.new_tcp()
      assert.equal("uv_timer", getmetatable(t).__name)
      assert.equal("uv_tcp", getmetatable(tcp).__name)
      for _, m in ipairs({ "close", "is_active", "is_closing", "ref", "unref", "has_ref", "get_type",
        "fileno", "start", "stop", "again", "set_repeat", "get_repeat", "get_due_in" }) do
        assert.equal("function", type(t[m]), "timer:" .. m)
      end
      for _, m in ipairs({ "close", "bind", "listen", "accept", "connect", "read_start", "read_stop", "write",
        "try_write", "shutdown", "is_readable", "is_writable", "nodelay", "keepalive", "simultaneous_accepts",
        "getsockname", "getpeername", "close_reset", "write_queue_size", "get_write_queue_size", "open",
        "send_buffer_size", "recv_buffer_size", "fileno" }) do
        assert.equal("function", type(tcp[m]), "tcp:" .. m)
      end
      t:close()
      tcp:close()
      H.run()
    end)
  end)

  describe("luvrs lifetime", function()
    if H.impl ~= "luvrs" then
      pending("__close (luv 1.44 handles are not closable)")
      return
    end

    it("a <close> variable closes the handle at the end of its scope", function()
      local seen
      do
        local t <close> = uv.new_timer()
        t:start(1000, 0, function() end)
        seen = t
      end
      assert.is_true(seen:is_closing())
      H.run()
    end)

    it("__close on an already closed handle does nothing", function()
      do
        local t <close> = uv.new_timer()
        t:close()
      end
      H.run()
    end)

    it("an active handle that is no longer referenced from Lua stays alive and fires", function()
      local fired = false
      do
        uv.new_timer():start(5, 0, function() fired = true end)
      end
      collectgarbage()
      collectgarbage()
      local t
      uv.walk(function(h) if h ~= H.guard then t = h end end)
      H.run()
      assert.is_true(fired)
      t:close()
      H.run()
    end)
  end)
end)
