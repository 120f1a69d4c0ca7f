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

-- uv.http_parse_request is the head parser plus the protocol's field checks and target split: it must
-- agree with the Lua parser followed by luvicorn.protocols.http.scan_request.
describe("parse_request, native vs lua parse_head + scan_request", function()
  local request = ok_uv and uv.http_parse_request or nil
  if not request then
    pending("uv.http_parse_request is not available")
    return
  end
  local scan_request = require("luvicorn.protocols.http").scan_request

  local function lua_request(buf, max_head, max_headers, max_body)
    local r = pack(lua_parse(buf, max_head, max_headers))
    if not r[1] then return r end
    local s = pack(scan_request(r[3], r[4], r[5], max_body))
    if s[1] == false then return s end
    for i = 1, s.n do r[5 + i] = s[i] end
    r.n = 5 + s.n
    return r
  end

  local FIELD_SEEDS = {
    "GET /a%20b%zz%4?q=%20 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\nTE: x, Trailers\r\n\r\n",
    "POST http://h:80/p/q?x HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\ncontent-length: 7\r\n"
      .. "Expect: 100-Continue\r\n\r\n",
    "POST HTTPS://h HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\ntransfer-encoding:  Chunked \r\n\r\n",
    "GET * HTTP/1.0\r\nConnection: Keep-Alive\r\nUpgrade: websocket\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    "GET ?x HTTP/1.1\r\nHost: a\r\nHost: b\r\nForwarded: for=1\r\nX-Forwarded-Proto: https\r\n\r\n",
    "PUT ftp://x/y HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "GET /%41%2f%%41 HTTP/1.0\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\n\r\n",
  }
  local FIELD_ALPHABET = { "Host: x\r\n", "Content-Length: 5\r\n", "Content-Length: 6\r\n",
    "Transfer-Encoding: chunked\r\n", "Connection: close\r\n", "Connection: keep-alive\r\n", "TE: trailers\r\n",
    "Expect: 100-continue\r\n", "Upgrade: websocket\r\n", "X-Forwarded-For: a\r\n", "%", "%4", "%41", "?", "/",
    "http://", "HTTPS://h", "*", ",", " ", "\t", "chunked", "1", "HTTP/1.0", "\r\n" }

  local function mutate_fields(rng, s)
    for _ = 1, rng(1, 3) do
      local pos = rng(1, #s + 1)
      if rng(1, 3) == 1 then
        s = s:sub(1, pos - 1) .. s:sub(pos + rng(1, 4))
      else
        s = s:sub(1, pos - 1) .. FIELD_ALPHABET[rng(1, #FIELD_ALPHABET)] .. s:sub(pos)
      end
    end
    return s
  end

  it("agrees on every seed as written", function()
    for _, input in ipairs(FIELD_SEEDS) do
      for _, max_body in ipairs({ false, 10, 6.5 }) do
        local mb = max_body or nil
        assert.are.same(lua_request(input, 16384, 100, mb), pack(request(input, 16384, 100, mb)), input)
      end
    end
  end)

  it("agrees on random mutations of header fields and targets", function()
    math.randomseed(20261122)
    local rng = math.random
    for i = 1, 20000 do
      local seeds = i % 3 == 0 and SEEDS or FIELD_SEEDS
      local input = mutate_fields(rng, mutate(rng, seeds[rng(1, #seeds)]))
      local max_body = rng(1, 3) == 1 and rng(0, 10) or nil
      local max_head = rng(1, 5) == 1 and rng(10, 80) or 16384
      local a = lua_request(input, max_head, 100, max_body)
      local b = pack(request(input, max_head, 100, max_body))
      assert.are.same(a, b, ("input %q max_body %s"):format(input, tostring(max_body)))
    end
  end)

  it("raises for wrong argument types as the other luvrs functions do", function()
    assert.has_error(function() request(nil, 10, 10) end,
      "bad argument #1 to 'http_parse_request' (string expected, got nil)")
    assert.has_error(function() request("GET / HTTP/1.1\r\n\r\n", 10, 10, "x") end,
      "bad argument #4 to 'http_parse_request' (number expected, got string)")
  end)
end)
