-- Oracle scenario: loop phases (timers, idle, prepare, check, close callbacks) and run modes.
-- Usage: lua5.4 spec/oracle/phases.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local show = require("spec.oracle.lib.show").printer(" ")

show("mode outside run", uv.loop_mode())
show("alive empty", uv.loop_alive())
show("backend_timeout empty", uv.backend_timeout())

local idle, check, prep, t = uv.new_idle(), uv.new_check(), uv.new_prepare(), uv.new_timer()
local iteration = 0
show("idle start", idle:start(function(...) show("idle", iteration, select("#", ...)) end))
show("prepare start", prep:start(function(...) show("prepare", iteration, select("#", ...)) end))
show("check start", check:start(function(...)
  show("check", iteration, select("#", ...), uv.loop_mode())
  iteration = iteration + 1
  if iteration == 3 then
    for _, h in ipairs({ idle, check, prep, t }) do
      h:close(function() show("close cb", (h:get_type())) end)
    end
  end
end))
show("timer start", t:start(0, 0, function() show("timer", iteration) end))
show("backend_timeout with idle", uv.backend_timeout())
show("run", uv.run())

-- several handles of one kind
local hs = {}
for i = 1, 4 do
  local h = uv.new_check()
  hs[i] = h
  h:start(function() show("check #" .. i) end)
end
local driver = uv.new_idle()
local rounds = 0
driver:start(function()
  rounds = rounds + 1
  if rounds == 2 then
    driver:close()
    for _, h in ipairs(hs) do h:close() end
  end
end)
show("run", uv.run())

-- run modes
local m = uv.new_timer()
m:start(0, 0, function() show("in", uv.loop_mode()) end)
show("nowait", uv.run("nowait"))
m:start(0, 0, function() show("in", uv.loop_mode()) end)
show("once", uv.run("once"))
m:start(1, 1, function() show("in", uv.loop_mode()) uv.stop() end)
show("default stopped", uv.run("default"))
show("once w/ repeat", uv.run("once"))
m:stop()
show("nowait idle", uv.run("nowait"))
m:close()
show("nowait closes", uv.run("nowait"))
show("alive end", uv.loop_alive())

-- an idle handle stopped and restarted from a check callback
local i2, c2 = uv.new_idle(), uv.new_check()
local n = 0
i2:start(function() show("i2", n) end)
c2:start(function()
  n = n + 1
  if n == 1 then show("i2 stop", i2:stop()) end
  if n == 2 then show("i2 start", i2:start(function() show("i2 again", n) end)) end
  if n == 3 then
    i2:close()
    c2:close()
  end
end)
local drive = uv.new_timer()
drive:start(1, 1, function() if n >= 3 then drive:close() end end)
show("run", uv.run())
