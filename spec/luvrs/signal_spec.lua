-- Signals: new_signal, signal_start, signal_start_oneshot, signal_stop, kill; names as lowercase
-- strings; several handles on one signal.
local H = require "helper"
local uv = H.uv

local close_all = H.close_all

describe("signal", function()
  after_each(H.after_each)

  it("new_signal makes a signal handle", function()
    local s = uv.new_signal()
    assert.are.same({ "signal", 16 }, { uv.handle_get_type(s) })
    assert.is_false(s:is_active())
    close_all(s)
  end)

  it("catches sigusr1 sent with kill(os_getpid(), 'sigusr1')", function()
    local s = uv.new_signal()
    local got
    assert.are.equal(0, s:start("sigusr1", H.expect(function(name) got = name end)))
    assert.is_true(s:is_active())
    assert.are.equal(0, uv.kill(uv.os_getpid(), "sigusr1"))
    H.run_until(function() return got end)
    assert.are.equal("sigusr1", got)
    assert.are.equal(0, uv.signal_stop(s))
    assert.is_false(s:is_active())
    close_all(s)
  end)

  it("accepts numbers and names, and reports lowercase names", function()
    local s = uv.new_signal()
    local got = {}
    uv.signal_start(s, 10, function(name) got[#got + 1] = name end) -- SIGUSR1 on Linux
    uv.kill(uv.os_getpid(), 10)
    H.run_until(function() return #got == 1 end)
    s:stop()
    s:start("sigusr2", function(name) got[#got + 1] = name end)
    uv.kill(uv.os_getpid(), 12)
    H.run_until(function() return #got == 2 end)
    assert.are.same({ "sigusr1", "sigusr2" }, got)
    close_all(s)
  end)

  it("fires every handle started on the same signal", function()
    local a, b = uv.new_signal(), uv.new_signal()
    local n = 0
    a:start("sigusr2", H.expect(function() n = n + 1 end))
    b:start("sigusr2", H.expect(function() n = n + 1 end))
    uv.kill(uv.os_getpid(), "sigusr2")
    H.run_until(function() return n == 2 end)
    close_all(a, b)
  end)

  it("signal_start_oneshot fires once and goes inactive", function()
    local s = uv.new_signal()
    local n = 0
    assert.are.equal(0, uv.signal_start_oneshot(s, "sigusr1", function() n = n + 1 end))
    uv.kill(uv.os_getpid(), "sigusr1")
    H.run_until(function() return n == 1 end)
    assert.is_false(s:is_active())
    close_all(s)
    assert.are.equal(1, n)
  end)

  it("kill with signal 0 probes a process; a missing one gives ESRCH", function()
    assert.are.equal(0, uv.kill(uv.os_getpid(), 0))
    local code
    local proc, pid = uv.spawn("true", {}, function(c) code = c end)
    H.run_until(function() return code end)
    close_all(proc)
    local ok, msg, name = uv.kill(pid, 0)
    assert.is_nil(ok)
    assert.are.equal("ESRCH", name)
    assert.are.equal("ESRCH: no such process", msg)
  end)

  it("rejects bad arguments naming the function", function()
    local s = uv.new_signal()
    local ok, err = pcall(uv.signal_start, s, "sigbogus", function() end)
    assert.is_false(ok)
    assert.matches("signal_start", err)
    ok, err = pcall(uv.kill, "x", 1)
    assert.is_false(ok)
    assert.matches("kill", err)
    close_all(s)
  end)
end)
