-- Errors raised inside callbacks (luvrs): by default they end run() and are re-raised from it with a
-- traceback, and the loop stays usable; uv.set_error_handler(fn) logs and continues instead.
-- luv prints "Uncaught Error" and exits the process, so none of this can run on luv.
local H = require "helper"
local uv = H.uv

local close_all = H.close_all

-- Runs the loop until two callbacks have failed (each failure ends a run); returns their "<name> cb
-- failed" messages sorted, since the two may fail in either order.
local function two_failures()
  local msgs = {}
  for _ = 1, 2 do
    local ok, err = pcall(H.run)
    assert.is_false(ok)
    msgs[#msgs + 1] = err:match("(%a+ cb failed)")
  end
  table.sort(msgs)
  return msgs
end

describe("callback errors", function()
  after_each(H.after_each)

  if H.impl ~= "luvrs" then
    pending("luv exits the process on an error in a callback; the handler is a luvrs extension")
    return
  end

  after_each(function() uv.set_error_handler(nil) end)

  describe("default", function()
    it("an error in a timer callback is re-raised from run() with a traceback", function()
      local t = uv.new_timer()
      t:start(1, 0, function() error("boom in timer") end)
      local ok, err = pcall(H.run)
      assert.is_false(ok)
      assert.matches("boom in timer", err, 1, true)
      assert.matches("stack traceback", err, 1, true)
      assert.matches("callback_errors_spec", err, 1, true)
      close_all(t)
    end)

    it("the loop stays usable: run() again runs the callbacks still due", function()
      local a, b, c = uv.new_timer(), uv.new_timer(), uv.new_timer()
      local log = {}
      a:start(5, 0, function()
        log[#log + 1] = "a"
        error("a failed")
      end)
      b:start(5, 0, function() log[#log + 1] = "b" end)
      c:start(20, 0, function() log[#log + 1] = "c" end)
      local ok = pcall(H.run)
      assert.is_false(ok)
      assert.same({ "a" }, log)
      H.run()
      assert.same({ "a", "b", "c" }, log)
      assert.is_false(a:is_active())
      close_all(a, b, c)
    end)

    it("a repeating timer whose callback failed keeps repeating", function()
      local t = uv.new_timer()
      local n = 0
      t:start(1, 1, function()
        n = n + 1
        if n == 1 then error("first tick fails") end
        if n == 3 then t:stop() end
      end)
      assert.is_false((pcall(H.run)))
      H.run()
      assert.equal(3, n)
      close_all(t)
    end)

    it("non-string error values are re-raised", function()
      local t = uv.new_timer()
      local e = setmetatable({}, { __tostring = function() return "custom error object" end })
      t:start(1, 0, function() error(e) end)
      local ok, err = pcall(H.run)
      assert.is_false(ok)
      assert.is_not_nil(err)
      assert.matches("custom error object", tostring(err), 1, true)
      close_all(t)
    end)

    for _, kind in ipairs({ "idle", "check", "prepare" }) do
      it("an error in a" .. (kind == "idle" and "n " or " ") .. kind .. " callback", function()
        local h = uv["new_" .. kind]()
        local keep = uv.new_timer()
        keep:start(1, 1, function() end)
        h:start(function()
          h:stop()
          keep:stop()
          error(kind .. " failed")
        end)
        local ok, err = pcall(H.run)
        assert.is_false(ok)
        assert.matches(kind .. " failed", err, 1, true)
        close_all(h, keep)
      end)
    end

    it("an error in a close callback; the handle is closed all the same", function()
      local t = uv.new_timer()
      t:close(function() error("close cb failed") end)
      local ok, err = pcall(H.run)
      assert.is_false(ok)
      assert.matches("close cb failed", err, 1, true)
      H.run()
      local left = 0
      uv.walk(function(h) if h == t then left = left + 1 end end)
      assert.equal(0, left)
    end)

    it("errors in connection, connect, read and write callbacks", function()
      local accepted
      local server, port = H.tcp_server(function(srv)
        accepted = uv.new_tcp()
        srv:accept(accepted)
        error("connection cb failed")
      end)
      local client = uv.new_tcp()
      client:connect("127.0.0.1", port, function() error("connect cb failed") end)
      assert.same({ "connect cb failed", "connection cb failed" }, two_failures())
      accepted:read_start(function() error("read cb failed") end)
      client:write("x", function() error("write cb failed") end)
      assert.same({ "read cb failed", "write cb failed" }, two_failures())
      -- the stream still works after the errors
      local got
      accepted:read_start(function(_, d) got = d end)
      client:write("still alive")
      H.run_until(function() return got end)
      assert.equal("still alive", got)
      close_all(server, client, accepted)
    end)
  end)

  describe("set_error_handler", function()
    it("calls the handler with the error and its traceback, and the loop continues", function()
      local seen = {}
      uv.set_error_handler(function(err) seen[#seen + 1] = err end)
      local a, b = uv.new_timer(), uv.new_timer()
      local log = {}
      a:start(1, 0, function() error("handled boom") end)
      b:start(10, 0, function() log[#log + 1] = "b ran" end)
      local ok, err = pcall(H.run)
      assert.is_true(ok, tostring(err))
      assert.equal(1, #seen)
      assert.matches("handled boom", seen[1], 1, true)
      assert.matches("stack traceback", seen[1], 1, true)
      assert.same({ "b ran" }, log)
      close_all(a, b)
    end)

    it("is called once per failing callback", function()
      local n = 0
      uv.set_error_handler(function() n = n + 1 end)
      local t = uv.new_timer()
      local ticks = 0
      t:start(1, 1, function()
        ticks = ticks + 1
        if ticks == 5 then t:stop() end
        error("tick " .. ticks)
      end)
      H.run()
      assert.equal(5, ticks)
      assert.equal(5, n)
      close_all(t)
    end)

    it("set_error_handler(nil) restores the default", function()
      uv.set_error_handler(function() end)
      uv.set_error_handler(nil)
      local t = uv.new_timer()
      t:start(1, 0, function() error("default again") end)
      local ok, err = pcall(H.run)
      assert.is_false(ok)
      assert.matches("default again", err, 1, true)
      close_all(t)
    end)

    it("rejects a non-function naming set_error_handler", function()
      local ok, err = pcall(uv.set_error_handler, 42)
      assert.is_false(ok)
      assert.matches("set_error_handler", err, 1, true)
      assert.matches("bad argument #1", err, 1, true)
    end)
  end)
end)
