-- UDP echo: a server on 127.0.0.1 that sends every datagram back, and a client that sends a few
-- and prints the replies.
--   LUA_CPATH='./build/?.so;;' lua5.4 examples/udp_echo.lua      (LUVRS_IMPL=luv runs it on luv)
local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")

local server = uv.new_udp()
assert(server:bind("127.0.0.1", 0))
local port = server:getsockname().port
print("echo server on udp://127.0.0.1:" .. port)

assert(server:recv_start(function(err, data, addr)
  assert(not err, err)
  -- libuv also calls back with no data when a burst of datagrams has been drained
  if data then server:send(data, addr.ip, addr.port) end
end))

local client = uv.new_udp()
local messages = { "hello", "over", "udp" }
local replies = 0
assert(client:recv_start(function(err, data)
  assert(not err, err)
  if not data then return end
  replies = replies + 1
  print("reply: " .. data)
  if replies == #messages then
    client:close()
    server:close()
  end
end))
for _, m in ipairs(messages) do
  client:send(m, "127.0.0.1", port, function(err) assert(not err, err) end)
end

uv.run()
