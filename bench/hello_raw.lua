-- The smallest HTTP/1.1 responder a Lua program can write on a luv-style loop: every request head
-- gets a fixed "hello" response on a kept-alive connection. For wrk. Usage:
-- lua5.4 bench/hello_raw.lua MODULE PORT
local uv = require(arg[1] or "luvrs")
local port = tonumber(arg[2] or "8080")
local response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(1024, function(err)
  assert(not err, err)
  local c = uv.new_tcp()
  server:accept(c)
  local buf = ""
  c:read_start(function(_, data)
    if not data then c:close() return end
    buf = buf .. data
    local out = {}
    while true do
      local e = buf:find("\r\n\r\n", 1, true)
      if not e then break end
      buf = buf:sub(e + 4)
      out[#out + 1] = response
    end
    if #out == 1 then c:write(out[1]) elseif #out > 1 then c:write(out) end
  end)
end))
local sig = uv.new_signal()
sig:start("sigterm", function() server:close(); sig:close(); uv.stop() end)
io.stderr:write("listening on " .. port .. "\n")
uv.run()
