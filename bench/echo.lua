-- TCP echo ping-pong over loopback: N client connections each send a 64-byte message, wait for the
-- echo, send again. Server and clients share one loop (one process, one core), so the figure is
-- the loop's cost per message. Usage: lua5.4 bench/echo.lua MODULE CONNECTIONS SECONDS
local uv = require(arg[1] or "luvrs")
local conns = tonumber(arg[2] or "1")
local seconds = tonumber(arg[3] or "3")
local msg = string.rep("x", 64)

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(1024, function(err)
  assert(not err, err)
  local c = uv.new_tcp()
  server:accept(c)
  c:read_start(function(_, data)
    if data then c:write(data) else c:close() end
  end)
end))
local port = server:getsockname().port

local count, running = 0, true
local clients = {}
for i = 1, conns do
  local c = uv.new_tcp()
  clients[i] = c
  local got = 0
  c:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    c:nodelay(true)
    c:read_start(function(_, data)
      if not data then return end
      got = got + #data
      if got >= #msg then
        got = got - #msg
        count = count + 1
        if running then c:write(msg) end
      end
    end)
    c:write(msg)
  end)
end

local start
local stopper = uv.new_timer()
local warm = uv.new_timer()
warm:start(300, 0, function()
  count = 0
  start = uv.hrtime()
  stopper:start(seconds * 1000, 0, function()
    running = false
    local elapsed = (uv.hrtime() - start) / 1e9
    print(("%.0f"):format(count / elapsed))
    for _, c in ipairs(clients) do c:close() end
    server:close()
    stopper:close()
    warm:close()
    uv.stop()
  end)
end)
uv.run()
os.exit(0)
