-- WebSocket echo load generator for `make bench`.
--   lua5.4 bench/ws_echo.lua LOOP PORT [CONNECTIONS=64] [SECONDS=5] [SIZE=64]
-- Opens CONNECTIONS WebSocket connections to ws://127.0.0.1:PORT/, keeps one masked text message of SIZE
-- bytes in flight on each, and prints the number of echoes received during SECONDS (after a 0.5 s warm-up)
-- and the rate: "<messages> <messages per second>".
local loop, port = arg[1], tonumber(arg[2])
local conns, seconds, size = tonumber(arg[3] or 64), tonumber(arg[4] or 5), tonumber(arg[5] or 64)
assert(loop and port, "usage: ws_echo.lua luvrs|luv PORT [CONNECTIONS] [SECONDS] [SIZE]")
local uv = require(loop)
local frames = require "luvicorn.websocket.frames"

local msg = frames.encode(frames.TEXT, string.rep("a", size), true, false, "\1\2\3\4")
local request = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
local counting, count, open = false, 0, 0
local sockets = {}

for i = 1, conns do
  local s = uv.new_tcp()
  sockets[i] = s
  s:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    if s.nodelay then s:nodelay(true) end
    s:write(request)
    local head, parser = "", nil
    s:read_start(function(rerr, data)
      assert(not rerr, rerr)
      if not data then return end
      if not parser then
        head = head .. data
        local e = head:find("\r\n\r\n", 1, true)
        if not e then return end
        assert(head:find("^HTTP/1.1 101 "), "no 101: " .. head:sub(1, 80))
        parser = frames.new_parser { require_mask = false }
        data = head:sub(e + 4)
        open = open + 1
        s:write(msg)
      end
      parser:feed(data)
      while true do
        local f = parser:next()
        if not f then break end
        if f.opcode == frames.TEXT then
          if counting then count = count + 1 end
          s:write(msg)
        end
      end
    end)
  end)
end

local t = uv.new_timer()
t:start(500, 0, function()
  assert(open == conns, ("only %d of %d connections opened"):format(open, conns))
  counting = true
  local t0 = uv.hrtime()
  t:start(math.floor(seconds * 1000), 0, function()
    counting = false
    local dt = (uv.hrtime() - t0) / 1e9
    print(count, math.floor(count / dt))
    for _, s in ipairs(sockets) do s:close() end
    t:close()
  end)
end)
uv.run()
