-- Timer churn: start and stop timers as a busy server does (a timeout armed and disarmed per
-- request), with 1,000 timers pending at all times. Prints start+stop pairs per second.
-- Usage: lua5.4 bench/timers.lua MODULE SECONDS
local uv = require(arg[1] or "luvrs")
local seconds = tonumber(arg[2] or "2")
local noop = function() end
local pending = {}
for i = 1, 1000 do
  pending[i] = uv.new_timer()
  pending[i]:start(60000 + i, 0, noop)
end
local t = uv.new_timer()
local n, start = 0, uv.hrtime()
local deadline = start + seconds * 1e9
while uv.hrtime() < deadline do
  for i = 1, 1000 do
    t:start(5000 + i, 0, noop)
    t:stop()
  end
  n = n + 1000
end
print(("%.0f"):format(n / ((uv.hrtime() - start) / 1e9)))
for _, p in ipairs(pending) do p:close() end
t:close()
uv.run()
