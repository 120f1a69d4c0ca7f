-- Timers: one-shot, repeating, again(), and stopping from a callback. Exits by itself.
--   LUA_CPATH='./build/?.so;;' lua5.4 examples/timers.lua
-- LUVRS_IMPL=luv runs the same program on the real luv.
local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")

local start = uv.now()
local function say(fmt, ...)
  print(("[%4d ms] " .. fmt):format(uv.now() - start, ...))
end

-- A one-shot timer closes itself when it fires.
local once = uv.new_timer()
once:start(50, 0, function()
  say("one-shot fired")
  once:close()
end)

-- A repeating timer that stops itself after five ticks.
local ticker = uv.new_timer()
local ticks = 0
ticker:start(20, 20, function()
  ticks = ticks + 1
  say("tick %d", ticks)
  if ticks == 5 then
    ticker:stop()
    ticker:close()
  end
end)

-- A watchdog that would fire after 60 ms of silence; each "kick" pushes it back with again().
local watchdog = uv.new_timer()
watchdog:start(60, 60, function()
  say("watchdog: no kick for 60 ms, giving up")
  watchdog:close()
end)
local kicker = uv.new_timer()
local kicks = 0
kicker:start(30, 30, function()
  kicks = kicks + 1
  if kicks <= 3 then
    say("kick %d (watchdog due in %d ms, reset to %d)", kicks, watchdog:get_due_in(), watchdog:get_repeat())
    watchdog:again()
  else
    say("no more kicks")
    kicker:close()
  end
end)

-- Timers with the same deadline fire in the order they were started.
for i = 1, 3 do
  local t = uv.new_timer()
  t:start(100, 0, function()
    say("same deadline #%d", i)
    t:close()
  end)
end

uv.run()
say("loop finished: nothing left to do")
