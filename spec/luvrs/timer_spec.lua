-- Timers: start/stop/again/repeat/due_in, ordering, and timers driven from timer callbacks.
local H = require "helper"
local uv = H.uv

describe("timer", function()
  after_each(H.after_each)

  it("new_timer returns a timer handle", function()
    local t = uv.new_timer()
    assert.equal("userdata", type(t))
    assert.equal("timer", (t:get_type()))
    assert.matches("^uv_timer_t: ", tostring(t))
    t:close()
    H.run()
  end)

  it("start and stop return 0; a one-shot fires once with no arguments", function()
    local t = uv.new_timer()
    local nargs
    assert.equal(0, t:start(5, 0, H.expect(function(...) nargs = select("#", ...) end)))
    assert.is_true(t:is_active())
    H.run()
    assert.equal(0, nargs)
    assert.is_false(t:is_active())
    assert.equal(0, t:stop())
    assert.equal(0, uv.timer_stop(t))
    t:close()
    H.run()
  end)

  it("function form and method form are the same operation", function()
    local t = uv.new_timer()
    assert.equal(0, uv.timer_start(t, 1, 0, H.expect()))
    H.run()
    uv.close(t)
    H.run()
  end)

  it("does not fire before its timeout", function()
    local t = uv.new_timer()
    uv.update_time()
    local start = uv.hrtime()
    local elapsed
    t:start(50, 0, H.expect(function() elapsed = (uv.hrtime() - start) / 1e6 end))
    H.run()
    assert.is_true(elapsed >= 49, ("fired after %.1f ms"):format(elapsed))
    t:close()
    H.run()
  end)

  it("a stopped timer does not fire", function()
    local t = uv.new_timer()
    t:start(5, 0, H.expect(nil, 0))
    t:stop()
    H.run()
    t:close()
    H.run()
  end)

  it("repeats until stopped from its own callback", function()
    local t = uv.new_timer()
    local n = 0
    t:start(1, 2, H.expect(function()
      n = n + 1
      if n == 4 then t:stop() end
    end, 4))
    H.run()
    assert.is_false(t:is_active())
    t:close()
    H.run()
  end)

  it("timers with equal deadlines fire in start order", function()
    uv.update_time()
    local order = {}
    local timers = {}
    for i = 1, 10 do
      local t = uv.new_timer()
      timers[i] = t
      t:start(10, 0, function() order[#order + 1] = i end)
    end
    H.run()
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, order)
    for _, t in ipairs(timers) do t:close() end
    H.run()
  end)

  it("timers fire in deadline order regardless of start order", function()
    local order = {}
    local timers = {}
    for i, ms in ipairs({ 30, 10, 20, 0 }) do
      local t = uv.new_timer()
      timers[i] = t
      t:start(ms, 0, function() order[#order + 1] = ms end)
    end
    H.run()
    assert.same({ 0, 10, 20, 30 }, order)
    for _, t in ipairs(timers) do t:close() end
    H.run()
  end)

  it("restarting a timer replaces its deadline and callback", function()
    local t = uv.new_timer()
    t:start(5, 0, H.expect(nil, 0))
    t:start(10, 0, H.expect())
    H.run()
    t:close()
    H.run()
  end)

  it("can be started and stopped from timer callbacks", function()
    local a, b, c = uv.new_timer(), uv.new_timer(), uv.new_timer()
    local log = {}
    c:start(20, 0, H.expect(nil, 0)) -- b's callback stops it before it is due
    a:start(1, 0, H.expect(function()
      log[#log + 1] = "a"
      b:start(1, 0, H.expect(function()
        log[#log + 1] = "b"
        c:stop()
        a:start(1, 0, H.expect(function() log[#log + 1] = "a again" end))
      end))
    end))
    H.run()
    assert.same({ "a", "b", "a again" }, log)
    for _, t in ipairs({ a, b, c }) do t:close() end
    H.run()
  end)

  -- libuv 1.44 (Debian's luv) runs every timer that is due at the loop's cached time in one pass,
  -- including timers started during that pass with a 0 ms timeout.
  it("a 0 ms timer started from a timer callback runs in the same timer pass", function()
    local a, b = uv.new_timer(), uv.new_timer()
    local log = {}
    local idle = uv.new_idle()
    idle:start(function() log[#log + 1] = "idle" end)
    a:start(0, 0, function()
      log[#log + 1] = "a"
      b:start(0, 0, function()
        log[#log + 1] = "b"
        idle:stop()
      end)
    end)
    H.run()
    assert.same({ "a", "b" }, log)
    for _, h in ipairs({ a, b, idle }) do h:close() end
    H.run()
  end)

  it("a repeating timer can change its own repeat from its callback", function()
    local t = uv.new_timer()
    local n = 0
    t:start(1, 1, H.expect(function()
      n = n + 1
      if n == 2 then t:set_repeat(0) end
    end, 3))
    -- set_repeat takes effect when the timer is next rescheduled: the third call is
    -- the last because the second call rescheduled it with the old repeat
    H.run()
    assert.equal(3, n)
    t:close()
    H.run()
  end)

  it("numeric strings are accepted for timeout and repeat, as Lua's C API converts them", function()
    local t = uv.new_timer()
    assert.equal(0, t:start("5", "0", H.expect()))
    H.run()
    t:close()
    H.run()
  end)

  it("a timeout with a fractional part raises an error", function()
    local t = uv.new_timer()
    local ok, err = pcall(t.start, t, 1.5, 0, function() end)
    assert.is_false(ok)
    assert.matches("bad argument", err, 1, true)
    assert.matches("integer representation", err, 1, true)
    t:close()
    H.run()
  end)

  it("a due timer stopped or closed by an earlier callback of the same pass does not fire", function()
    uv.update_time()
    local a, b, c = uv.new_timer(), uv.new_timer(), uv.new_timer()
    local log = {}
    a:start(5, 0, function()
      log[#log + 1] = "a"
      b:stop()
      c:close()
    end)
    b:start(5, 0, function() log[#log + 1] = "b" end)
    c:start(5, 0, function() log[#log + 1] = "c" end)
    H.run()
    assert.same({ "a" }, log)
    a:close()
    b:close()
    H.run()
  end)

  it("2000 timers with random deadlines fire sorted by deadline, ties in start order", function()
    local rng_state = 12345
    local function rand(n) -- a small LCG: the same sequence on every run
      rng_state = (rng_state * 1103515245 + 12345) % 2147483648
      return rng_state % n
    end
    uv.update_time()
    local fired, timers, deadline = {}, {}, {}
    for i = 1, 2000 do
      local t = uv.new_timer()
      timers[i] = t
      deadline[i] = rand(40)
      t:start(deadline[i], 0, function() fired[#fired + 1] = i end)
    end
    H.run()
    assert.equal(2000, #fired)
    local want = {}
    for i = 1, 2000 do want[i] = i end
    table.sort(want, function(x, y)
      if deadline[x] ~= deadline[y] then return deadline[x] < deadline[y] end
      return x < y
    end)
    assert.same(want, fired)
    for _, t in ipairs(timers) do t:close() end
    H.run()
  end)

  describe("repeat", function()
    it("get_repeat/set_repeat; start sets the repeat; set_repeat returns nothing", function()
      local t = uv.new_timer()
      assert.equal(0, t:get_repeat())
      assert.equal(0, select("#", t:set_repeat(25)))
      assert.equal(25, t:get_repeat())
      assert.equal(25, uv.timer_get_repeat(t))
      t:start(100, 7, function() end)
      assert.equal(7, t:get_repeat())
      uv.timer_set_repeat(t, 3)
      assert.equal(3, t:get_repeat())
      t:close()
      H.run()
    end)
  end)

  describe("again", function()
    it("returns the EINVAL triple on a timer that was never started", function()
      local t = uv.new_timer()
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { t:again() })
      t:set_repeat(10)
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.timer_again(t) })
      t:close()
      H.run()
    end)

    it("restarts a stopped timer with its repeat value as timeout and repeat", function()
      local t = uv.new_timer()
      local n = 0
      t:start(100000, 0, function()
        n = n + 1
        if n == 3 then t:stop() end
      end)
      t:stop()
      t:set_repeat(2)
      assert.equal(0, t:again())
      assert.is_true(t:is_active())
      assert.equal(2, t:get_due_in())
      H.run()
      assert.equal(3, n)
      t:close()
      H.run()
    end)

    it("with a 0 repeat changes nothing: stopped stays stopped, active keeps its deadline", function()
      local t = uv.new_timer()
      t:start(50, 0, H.expect(nil, 0))
      t:stop()
      assert.equal(0, t:again())
      assert.is_false(t:is_active())
      H.run()
      uv.update_time()
      t:start(300, 0, function() end)
      assert.equal(0, t:again())
      assert.is_true(t:is_active())
      assert.equal(300, t:get_due_in())
      t:close()
      H.run()
    end)

    it("pushes a repeating timer's deadline back", function()
      local t = uv.new_timer()
      t:start(1000, 40, function() end)
      uv.update_time()
      assert.equal(0, t:again())
      local due = t:get_due_in()
      assert.is_true(due <= 40 and due >= 35, "due in " .. due)
      t:close()
      H.run()
    end)
  end)

  describe("get_due_in", function()
    it("is the time until the deadline", function()
      local t = uv.new_timer()
      uv.update_time()
      t:start(200, 0, function() end)
      assert.equal(200, t:get_due_in())
      assert.equal(200, uv.timer_get_due_in(t))
      uv.sleep(30)
      uv.update_time()
      local due = t:get_due_in()
      assert.is_true(due <= 170 and due >= 100, "due in " .. due)
      t:close()
      H.run()
    end)

    it("is 0 once the deadline has passed", function()
      local t = uv.new_timer()
      local due
      t:start(1, 0, function() due = t:get_due_in() end)
      H.run()
      assert.equal(0, due)
      t:close()
      H.run()
    end)
  end)

  it("closing a timer inside its own callback stops it and runs the close callback later", function()
    local t = uv.new_timer()
    local log = {}
    t:start(1, 1, H.expect(function()
      log[#log + 1] = "tick"
      t:close(H.expect(function(...)
        log[#log + 1] = "closed:" .. select("#", ...)
      end))
      log[#log + 1] = "after close"
      log[#log + 1] = tostring(t:is_active()) .. "/" .. tostring(t:is_closing())
    end))
    H.run()
    assert.same({ "tick", "after close", "false/true", "closed:0" }, log)
  end)

  it("an unreferenced active timer does not keep the loop alive", function()
    local t = uv.new_timer()
    t:unref()
    t:start(10, 0, H.expect(nil, 0))
    assert.is_false(uv.run())
    t:close()
    H.run()
  end)
end)
