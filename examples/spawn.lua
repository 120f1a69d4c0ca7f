-- Spawn a child with pipes for stdin and stdout, feed it text, read its answer, report how it exited;
-- then kill a sleeping child and see the signal.
--   LUA_CPATH='./build/?.so;;' lua5.4 examples/spawn.lua      (LUVRS_IMPL=luv runs it on luv)
local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")

local stdin, stdout = uv.new_pipe(false), uv.new_pipe(false)
local handle, pid
handle, pid = uv.spawn("tr", { args = { "a-z", "A-Z" }, stdio = { stdin, stdout, 2 } },
  function(code, signal)
    print(("tr exited: code %d, signal %d"):format(code, signal))
    handle:close()
  end)
assert(handle, pid)
print("spawned tr as pid " .. pid)

local out = {}
stdout:read_start(function(err, data)
  assert(not err, err)
  if data then
    out[#out + 1] = data
  else
    print("tr said: " .. table.concat(out))
    stdout:close()
  end
end)
stdin:write("shout this, please\n")
stdin:shutdown(function() stdin:close() end)

local sleeper
sleeper = uv.spawn("sleep", { args = { "30" } }, function(code, signal)
  print(("sleep exited: code %d, signal %d"):format(code, signal))
  sleeper:close()
end)
local timer = uv.new_timer()
timer:start(100, 0, function()
  sleeper:kill("sigterm")
  timer:close()
end)
uv.run()
