-- Idle, check and prepare handles, and where they run within an iteration (libuv's phase order).
local H = require "helper"
local uv = H.uv

describe("idle/check/prepare", function()
  after_each(H.after_each)

  for _, kind in ipairs({ "idle", "check", "prepare" }) do
    describe(kind, function()
      local new, start, stop = uv["new_" .. kind], uv[kind .. "_start"], uv[kind .. "_stop"]

      it("new_" .. kind .. " returns a " .. kind .. " handle", function()
        local h = new()
        assert.equal(kind, (h:get_type()))
        assert.matches("^uv_" .. kind .. "_t: ", tostring(h))
        assert.is_false(h:is_active())
        h:close()
        H.run()
      end)

      it("start/stop return 0; the callback gets no arguments and runs once per iteration", function()
        local h = new()
        local nargs = {}
        local keep = uv.new_timer()
        keep:start(1, 1, function() end) -- check and prepare alone would let poll block
        local stopped
        assert.equal(0, h:start(function(...)
          nargs[#nargs + 1] = select("#", ...)
          if #nargs == 3 then
            stopped = h:stop()
            keep:stop()
          end
        end))
        assert.is_true(h:is_active())
        H.run()
        assert.same({ 0, 0, 0 }, nargs)
        assert.equal(0, stopped)
        assert.is_false(h:is_active())
        h:close()
        keep:close()
        H.run()
      end)

      it("function forms " .. kind .. "_start/" .. kind .. "_stop", function()
        local h = new()
        local t = uv.new_timer()
        t:start(1, 1, function() end)
        assert.equal(0, start(h, H.expect(function()
          stop(h)
          t:stop()
        end)))
        H.run()
        h:close()
        t:close()
        H.run()
      end)

      it("an active " .. kind .. " alone keeps the loop alive", function()
        local h = new()
        h:start(function() end)
        assert.is_true(uv.loop_alive())
        h:unref()
        assert.is_false(uv.loop_alive())
        h:close()
        H.run()
      end)

      it("closing the " .. kind .. " inside its own callback", function()
        local h = new()
        local t = uv.new_timer()
        t:start(1, 1, function() end)
        local log = {}
        h:start(H.expect(function()
          log[#log + 1] = "cb"
          h:close(H.expect(function()
            log[#log + 1] = "closed"
            t:close()
          end))
        end))
        H.run()
        assert.same({ "cb", "closed" }, log)
      end)

      it("starting an active " .. kind .. " again replaces its callback", function()
        local h = new()
        local log = {}
        local t = uv.new_timer()
        t:start(1, 1, function() end)
        h:start(function() log[#log + 1] = "first" end)
        h:start(function()
          log[#log + 1] = "second"
          h:stop()
          t:stop()
        end)
        H.run()
        assert.same({ "second" }, log)
        h:close()
        t:close()
        H.run()
      end)
    end)
  end

  it("phases run in libuv's order: timers, idle, prepare, (poll), check, close callbacks (newest first)", function()
    local log = {}
    local idle, check, prep, t = uv.new_idle(), uv.new_check(), uv.new_prepare(), uv.new_timer()
    local iterations = 0
    idle:start(function() log[#log + 1] = "idle" end)
    prep:start(function() log[#log + 1] = "prepare" end)
    check:start(function()
      log[#log + 1] = "check"
      iterations = iterations + 1
      if iterations == 2 then
        for _, h in ipairs({ idle, check, prep, t }) do
          h:close(function() log[#log + 1] = "close " .. h:get_type() end)
        end
      end
    end)
    t:start(0, 0, function() log[#log + 1] = "timer" end)
    H.run()
    assert.same({
      "timer", "idle", "prepare", "check",
      "idle", "prepare", "check",
      "close timer", "close prepare", "close check", "close idle",
    }, log)
  end)

  -- libuv pushes a started idle/check/prepare onto the front of its list
  it("handles of one kind run newest first", function()
    local log = {}
    local hs = {}
    for i = 1, 4 do
      local h = uv.new_check()
      hs[i] = h
      h:start(function()
        log[#log + 1] = i
        if #log == 4 then
          for _, x in ipairs(hs) do x:close() end
        end
      end)
    end
    local t = uv.new_timer()
    t:start(0, 0, function() t:close() end)
    H.run()
    assert.same({ 4, 3, 2, 1 }, log)
  end)

  it("an active idle handle makes the poll phase not block", function()
    local idle = uv.new_idle()
    local t = uv.new_timer()
    local n = 0
    idle:start(function() n = n + 1 end)
    t:start(50, 0, function()
      idle:close()
      t:close()
    end)
    H.run()
    assert.is_true(n > 5, "idle ran " .. n .. " times while waiting 50 ms")
  end)
end)
