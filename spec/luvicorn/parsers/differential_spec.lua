-- Differential check of the two request-head parsers: the same random and malformed heads go to the
-- pure-Lua parser and to the native one (uv.http_parse_head of luvrs), and the results must be identical.
local parsers = require("luvicorn.parsers")

local ok_uv, uv = pcall(require, "luvrs")
local native = ok_uv and uv.http_parse_head or nil
local lua_parse = require("luvicorn.parsers.lua").parse_head

local SEEDS = {
  "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
  "POST /submit?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
  "GET /chunk HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Many:  a ,  b\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  "\r\nHEAD * HTTP/1.0\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n",
  "OPTIONS http://h/p HTTP/1.1\r\nHost: h\r\nA:\r\nB: \xe9\xff\r\n\r\n",
}
local ALPHABET = { "\r", "\n", "\r\n", " ", "\t", ":", "\0", "\127", "\1", "a", "Z", "/", "%", "HTTP/1.1",
  "HTTP/2.0", "\r\n\r\n", "\r\n ", "\255", ";", "-", "1" }

local function pack(...) return { n = select("#", ...), ... } end

local function mutate(rng, s)
  local n = rng(1, 4)
  for _ = 1, n do
    local op = rng(1, 4)
    local pos = rng(1, #s + 1)
    if op == 1 then
      s = s:sub(1, pos - 1) .. ALPHABET[rng(1, #ALPHABET)] .. s:sub(pos)
    elseif op == 2 then
      s = s:sub(1, pos - 1) .. s:sub(pos + rng(1, 3))
    elseif op == 3 then
      s = s:sub(1, pos - 1) .. string.char(rng(0, 255)) .. s:sub(pos + 1)
    else
      s = s:sub(1, pos) -- truncate
    end
  end
  return s
end

local function random_bytes(rng)
  local t = {}
  for i = 1, rng(0, 80) do t[i] = string.char(rng(0, 255)) end
  return table.concat(t)
end

describe("parse_head, native vs lua", function()
  if not native then
    pending("uv.http_parse_head is not available (luvrs not built or without the native parser)")
    return
  end

  it("is listed by parsers.available", function()
    assert.are.equal(2, #parsers.available(uv))
  end)

  it("agrees on random mutations, random bytes and random limits", function()
    math.randomseed(20261121)
    local rng = math.random
    for i = 1, 20000 do
      local input
      if i % 10 == 0 then input = random_bytes(rng) else input = mutate(rng, SEEDS[rng(1, #SEEDS)]) end
      local max_head = rng(1, 3) == 1 and rng(10, 80) or 16384
      local max_headers = rng(1, 3) == 1 and rng(0, 3) or 100
      local a = pack(lua_parse(input, max_head, max_headers))
      local b = pack(native(input, max_head, max_headers))
      assert.are.same(a, b, ("input %q max_head %d max_headers %d"):format(input, max_head, max_headers))
    end
  end)
end)
