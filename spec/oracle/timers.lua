-- Oracle scenario: timers. Usage: lua5.4 spec/oracle/timers.lua luvrs|luv
-- Prints one line per callback or result; nothing depends on timing, addresses or ports.
local uv = require(arg[1] or "luvrs")

local show = require("spec.oracle.lib.show").printer(" ")

local function nargs(...) return select("#", ...), ... end

-- equal deadlines fire in start order
uv.update_time()
local timers = {}
for i = 1, 5 do
  local t = uv.new_timer()
  timers[i] = t
  show("start", i, t:start(10, 0, function(...) show("fire", i, "nargs", select("#", ...)) end))
end
show("run", uv.run())
for i = 1, 5 do show("close", i, nargs(timers[i]:close())) end
show("run", uv.run())

-- deadline order, not start order
for _, ms in ipairs({ 30, 10, 20, 0 }) do
  local t = uv.new_timer()
  t:start(ms, 0, function()
    show("deadline", ms)
    t:close(function(...) show("closed", ms, "nargs", select("#", ...)) end)
  end)
end
show("run", uv.run())

-- repeat, stop from its own callback, get/set repeat, again
local r = uv.new_timer()
show("repeat initial", r:get_repeat())
show("set_repeat", nargs(r:set_repeat(7)))
show("repeat now", r:get_repeat())
show("again unstarted", r:again())
local ticks = 0
show("start", r:start(1, 2, function()
  ticks = ticks + 1
  show("tick", ticks, "active", r:is_active())
  if ticks == 3 then show("stop", r:stop(), "active", r:is_active()) end
end))
show("repeat after start", r:get_repeat())
show("run", uv.run())
show("again stopped", r:again(), "active", r:is_active())
ticks = 0
show("run", uv.run())
r:set_repeat(0)
show("again rep 0", r:again(), "active", r:is_active())

-- due_in right after start
uv.update_time()
r:start(100, 0, function() end)
show("due_in", r:get_due_in())
r:stop()

-- timers started and stopped from timer callbacks
local a, b, c = uv.new_timer(), uv.new_timer(), uv.new_timer()
c:start(50, 0, function() show("c must not fire") end)
a:start(1, 0, function()
  show("a")
  b:start(1, 0, function()
    show("b stops c", c:stop())
    a:start(1, 0, function() show("a again") end)
  end)
end)
show("run", uv.run())

-- stop() from a callback, then resume
local s = uv.new_timer()
local n = 0
s:start(1, 1, function()
  n = n + 1
  show("stopper", n, uv.loop_mode())
  if n == 2 then uv.stop() end
  if n == 4 then s:stop() end
end)
show("run until stop", uv.run())
show("alive", uv.loop_alive())
show("run rest", uv.run())

-- close inside its own callback
local self_closer = uv.new_timer()
self_closer:start(1, 1, function()
  show("self close", nargs(self_closer:close(function(...) show("self closed", select("#", ...)) end)))
  show("closing", self_closer:is_closing(), "active", self_closer:is_active())
end)
show("run", uv.run())

-- unref
local u = uv.new_timer()
u:start(5, 0, function() show("unref timer fired") end)
show("unref", nargs(u:unref()))
show("has_ref", u:has_ref(), "alive", uv.loop_alive())
show("run", uv.run())
show("ref", nargs(u:ref()))
show("run", uv.run())

for _, t in ipairs({ r, a, b, c, s, u }) do t:close() end
show("final run", uv.run(), "alive", uv.loop_alive())
