-- The error contract: runtime failures return nil, "ECODE: message", "ECODE"; misuse raises an error
-- whose message names the function and the argument (luv's "bad argument #N to '...timer_start'").
local H = require "helper"
local uv = H.uv

describe("errors", function()
  after_each(H.after_each)

  describe("the error triple", function()
    local function check_triple(res, code)
      assert.equal(3, res.n, "three values")
      assert.is_nil(res[1])
      assert.equal("string", type(res[2]))
      assert.equal(code, res[3])
      assert.equal(code, res[2]:match("^(%u+): "), res[2])
      assert.is_true(#res[2] > #code + 2, "a message follows the code")
    end

    local function pack(...) return { n = select("#", ...), ... } end

    it("is returned by failing calls across the API", function()
      local t, tcp = uv.new_timer(), uv.new_tcp()
      check_triple(pack(t:again()), "EINVAL")
      check_triple(pack(tcp:fileno()), "EBADF")
      check_triple(pack(tcp:getsockname()), "EBADF")
      check_triple(pack(tcp:getpeername()), "EBADF")
      check_triple(pack(tcp:shutdown()), "ENOTCONN")
      check_triple(pack(tcp:try_write("x")), "EBADF")
      check_triple(pack(uv.os_getenv("LUVRS_SPEC_NOT_SET")), "ENOENT")
      check_triple(pack(uv.chdir("/nonexistent-luvrs")), "ENOENT")
      check_triple(pack(uv.new_tcp("unix")), "EINVAL")
      local server, port = H.tcp_server(function() end)
      local other = uv.new_tcp()
      other:bind("127.0.0.1", port)
      check_triple(pack(other:listen(1, function() end)), "EADDRINUSE")
      check_triple(pack(server:accept(uv.new_tcp())), "EAGAIN")
      for _, h in ipairs({ t, tcp, server, other }) do h:close() end
      uv.walk(function(h) if h ~= H.guard and not h:is_closing() then h:close() end end)
      H.run()
    end)

    it("has the exact libuv messages for common codes", function()
      local tcp = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { tcp:fileno() })
      assert.same({ nil, "ENOTCONN: socket is not connected", "ENOTCONN" }, { tcp:shutdown() })
      assert.same({ nil, "ENOENT: no such file or directory", "ENOENT" }, { uv.chdir("/nonexistent-luvrs") })
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.new_tcp("unix") })
      tcp:close()
      H.run()
    end)

    it("callbacks get the bare code name", function()
      local probe = uv.new_tcp()
      probe:bind("127.0.0.1", 0)
      local port = probe:getsockname().port
      probe:close()
      H.run()
      local c = uv.new_tcp()
      local got
      c:connect("127.0.0.1", port, function(err) got = err end)
      H.run_until(function() return got end)
      assert.equal("ECONNREFUSED", got)
      c:close()
      H.run()
    end)
  end)

  describe("bad arguments", function()
    local t, tcp, idle, check, prep

    before_each(function()
      t, tcp, idle, check, prep = uv.new_timer(), uv.new_tcp(), uv.new_idle(), uv.new_check(), uv.new_prepare()
    end)

    after_each(function()
      for _, h in ipairs({ t, tcp, idle, check, prep }) do
        if not h:is_closing() then h:close() end
      end
      H.run()
    end)

    local function f() end

    -- { function name, argument position that is wrong, arguments }; the handles are filled in later
    local cases = {
      { "timer_start", 1, function() return 1, 1, 0, f end },
      { "timer_start", 1, function() return tcp, 1, 0, f end },
      { "timer_start", 2, function() return t, "soon", 0, f end },
      { "timer_start", 3, function() return t, 1, "often", f end },
      { "timer_start", 4, function() return t, 1, 0, 5 end },
      { "timer_stop", 1, function() return tcp end },
      { "timer_again", 1, function() return "x" end },
      { "timer_set_repeat", 2, function() return t, "x" end },
      { "timer_get_repeat", 1, function() return {} end },
      { "timer_get_due_in", 1, function() return nil end },
      { "idle_start", 1, function() return t, f end },
      { "idle_start", 2, function() return idle, nil end },
      { "idle_stop", 1, function() return t end },
      { "check_start", 1, function() return idle, f end },
      { "check_stop", 1, function() return 1 end },
      { "prepare_start", 2, function() return prep, 1 end },
      { "prepare_stop", 1, function() return 1 end },
      { "close", 1, function() return "x" end },
      { "close", 2, function() return t, 5 end },
      { "is_active", 1, function() return 1 end },
      { "is_closing", 1, function() return nil end },
      { "ref", 1, function() return 1 end },
      { "unref", 1, function() return {} end },
      { "has_ref", 1, function() return 1 end },
      { "handle_get_type", 1, function() return 1 end },
      { "fileno", 1, function() return 1 end },
      { "send_buffer_size", 1, function() return 1 end },
      { "recv_buffer_size", 2, function() return tcp, "x" end },
      { "tcp_bind", 1, function() return t, "127.0.0.1", 0 end },
      { "tcp_bind", 2, function() return tcp, nil, 0 end },
      { "tcp_bind", 3, function() return tcp, "127.0.0.1", "x" end },
      { "tcp_connect", 2, function() return tcp, nil, 1, f end },
      { "tcp_connect", 3, function() return tcp, "127.0.0.1", "x", f end },
      { "tcp_connect", 4, function() return tcp, "127.0.0.1", 1, 5 end },
      { "tcp_nodelay", 2, function() return tcp, "x" end },
      { "tcp_nodelay", 2, function() return tcp end },
      { "tcp_keepalive", 2, function() return tcp, "x" end },
      { "tcp_keepalive", 3, function() return tcp, true end },
      { "tcp_keepalive", 3, function() return tcp, true, "x" end },
      { "tcp_simultaneous_accepts", 2, function() return tcp, "x" end },
      { "tcp_getsockname", 1, function() return t end },
      { "tcp_getpeername", 1, function() return 1 end },
      { "tcp_close_reset", 1, function() return t end },
      { "tcp_close_reset", 2, function() return tcp, 5 end },
      { "tcp_write_queue_size", 1, function() return 1 end },
      { "tcp_open", 2, function() return tcp, "x" end },
      { "listen", 1, function() return t, 1, f end },
      { "listen", 2, function() return tcp, "x", f end },
      { "listen", 3, function() return tcp, 1, 5 end },
      { "accept", 1, function() return 1, tcp end },
      { "accept", 2, function() return tcp, t end },
      { "read_start", 1, function() return t, f end },
      { "read_start", 2, function() return tcp, 5 end },
      { "read_stop", 1, function() return t end },
      { "write", 1, function() return t, "x" end },
      { "write", 2, function() return tcp, nil end },
      { "write", 2, function() return tcp, true end },
      { "write", 3, function() return tcp, "x", 5 end },
      { "try_write", 1, function() return t, "x" end },
      { "try_write", 2, function() return tcp, nil end },
      { "shutdown", 1, function() return t end },
      { "shutdown", 2, function() return tcp, 5 end },
      { "is_readable", 1, function() return t end },
      { "is_writable", 1, function() return 1 end },
      { "stream_get_write_queue_size", 1, function() return t end },
      { "run", 1, function() return "x" end },
      { "walk", 1, function() return nil end },
      { "new_tcp", 1, function() return {} end },
      { "new_tcp", 1, function() return "foo" end },
      { "chdir", 1, function() return nil end },
      { "sleep", 1, function() return nil end },
      { "os_getenv", 1, function() return nil end },
      { "os_setenv", 1, function() return nil, "x" end },
      { "os_setenv", 2, function() return "X" end },
      { "os_unsetenv", 1, function() return nil end },
    }

    for _, case in ipairs(cases) do
      local name, pos, args = case[1], case[2], case[3]
      it(name .. ": argument #" .. pos, function()
        local ok, err = pcall(uv[name], args())
        assert.is_false(ok, name .. " accepted a bad argument #" .. pos)
        assert.equal("string", type(err))
        assert.matches("bad argument #" .. pos, err, 1, true)
        assert.matches(name, err, 1, true)
      end)
    end

    it("method calls name the method", function()
      local ok, err = pcall(function() return t:start("soon", 0, f) end)
      assert.is_false(ok)
      assert.matches("start", err, 1, true)
      assert.matches("bad argument", err, 1, true)
    end)

    it("an invalid IP address raises an error that names it", function()
      for _, fn in ipairs({ "tcp_bind", "tcp_connect" }) do
        for _, ip in ipairs({ "", "localhost", "1.2.3", "256.0.0.1", "::g" }) do
          local ok, err = pcall(uv[fn], tcp, ip, 80, f)
          assert.is_false(ok, fn .. " accepted " .. ip)
          assert.matches("[" .. ip .. ":80]", err, 1, true)
          if H.impl == "luvrs" then assert.matches(fn, err, 1, true) end
        end
      end
    end)

    it("closing a handle twice raises an error", function()
      t:close()
      local ok, err = pcall(uv.close, t)
      assert.is_false(ok)
      assert.matches("already closing", err, 1, true)
    end)
  end)
end)
