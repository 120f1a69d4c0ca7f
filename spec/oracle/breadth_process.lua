-- Oracle scenario: processes (stdio pipes, exit codes, signals), signal handles, async, poll.
-- Usage: lua5.4 spec/oracle/breadth_process.lua luvrs|luv
local uv = require(arg[1] or "luvrs")

local S = require "spec.oracle.lib.show"
local show = S.printer(" | ", function(v)
  if type(v) == "number" and math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v) end
  return S.text(v)
end)

-- a child echoing through pipes
-- (exit and end of output race each other: report both after the run)
local stdin, stdout = uv.new_pipe(), uv.new_pipe()
local proc, exit_status, output = nil, nil, {}
proc = uv.spawn("cat", { stdio = { stdin, stdout, 2 } }, function(code, sig)
  exit_status = { code, sig }
  proc:close()
end)
show("spawn", proc ~= nil, uv.handle_get_type(proc))
stdout:read_start(function(err, data)
  output[#output + 1] = tostring(err) .. ":" .. tostring(data)
  if not data then stdout:close() end
end)
stdin:write("meow")
stdin:shutdown(function() stdin:close() end)
uv.run()
show("cat out", table.concat(output, " "))
show("cat exit", exit_status[1], exit_status[2])

-- exit code, then kill
local p2
p2 = uv.spawn("sh", { args = { "-c", "exit 3" } }, function(code, sig)
  show("sh exit", code, sig)
  p2:close()
end)
uv.run()
local p3
p3 = uv.spawn("sleep", { args = { "10" } }, function(code, sig)
  show("sleep exit", code, sig)
  p3:close()
end)
show("process_kill", p3:kill("sigterm"))
uv.run()
show("spawn missing", uv.spawn("/nonexistent/luvrs-oracle", {}, function() end))

-- signal
local s = uv.new_signal()
s:start("sigusr1", function(name)
  show("signal", name)
  s:close()
end)
show("kill self", uv.kill(uv.os_getpid(), "sigusr1"))
uv.run()

-- async
local a
a = uv.new_async(function(...)
  show("async", ...)
  a:close()
end)
show("async active", a:is_active())
a:send(1, "two")
a:send(3, "four")
uv.run()

-- poll
local fds = uv.pipe()
local poll = uv.new_poll(fds.read)
local w = uv.new_pipe()
w:open(fds.write)
poll:start("r", function(err, ev)
  show("poll", err, ev)
  poll:stop()
  poll:close()
  w:close()
  local rp = uv.new_pipe()
  rp:open(fds.read)
  rp:close()
end)
w:write("x")
uv.run()
show("done", uv.loop_alive())
