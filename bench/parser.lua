-- Request-head parsing: Luvicorn's pure-Lua parser against luvrs's native one, on wrk's one-header
-- request and on an 8-header browser request. Prints "name|lua µs|native µs" rows.
-- Usage: lua5.4 bench/parser.lua
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
local uv = require "luvrs"
local lua_parse = require("luvicorn.parsers.lua").parse_head

local heads = {
  { "wrk's request (1 header)", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n" },
  { "browser request (8 headers)", "GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\n"
    .. "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml\r\n"
    .. "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n"
    .. "Cookie: a=b; c=d\r\nCache-Control: no-cache\r\n\r\n" },
}

local function us_per_call(parse, head)
  local n = 200000
  local t0 = os.clock()
  for _ = 1, n do parse(head, 16384, 100) end
  return (os.clock() - t0) / n * 1e6
end

for _, h in ipairs(heads) do
  assert(uv.http_parse_head(h[2], 16384, 100) == lua_parse(h[2], 16384, 100))
  print(("%s|%.2f|%.2f"):format(h[1], us_per_call(lua_parse, h[2]), us_per_call(uv.http_parse_head, h[2])))
end
