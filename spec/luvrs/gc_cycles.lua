-- Run by gc_spec in a fresh lua5.4: open/close cycles of a timer, a TCP handle and an idle handle,
-- then prints the Lua heap, RSS and fd count deltas over the second round of CYCLES cycles.
-- Usage: lua5.4 spec/luvrs/gc_cycles.lua MODULE CYCLES
package.path = "./spec/?.lua;" .. package.path
local uv = require(arg[1])
local cycles = tonumber(arg[2])

local function fd_count()
  local p = io.popen("ls -l /proc/" .. math.tointeger(uv.os_getpid()) .. "/fd | grep -- '->' | grep -vc 'pipe:'")
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, pages = f:read("*n", "*n")
  f:close()
  return pages * 4096
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

local function cycle()
  local t = uv.new_timer()
  t:start(1000, 0, function() end)
  t:stop()
  t:close()
  local c = uv.new_tcp("inet")
  c:close(function() end)
  local i = uv.new_idle()
  i:start(function() end)
  i:close()
  uv.run()
end

-- warm up: malloc arenas and internal tables reach their steady size within the first round
for _ = 1, cycles do cycle() end
full_gc()
local kb0, rss0, fds0 = collectgarbage("count"), rss(), fd_count()
for _ = 1, cycles do cycle() end
full_gc()
print(collectgarbage("count") - kb0, rss() - rss0, fds0, fd_count())
