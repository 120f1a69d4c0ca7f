-- Socket-free specs of the opening handshake: Sec-WebSocket-Accept, request validation (400 / 426),
-- subprotocol lists and the responses.
local handshake = require "luvicorn.websocket.handshake"

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="

local function headers(extra, without)
  local h = {
    { "host", "server.example.com" },
    { "upgrade", "websocket" },
    { "connection", "Upgrade" },
    { "sec-websocket-key", KEY },
    { "sec-websocket-version", "13" },
  }
  local out = {}
  for _, p in ipairs(h) do
    if p[1] ~= without then out[#out + 1] = p end
  end
  for _, p in ipairs(extra or {}) do out[#out + 1] = p end
  return out
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("websocket handshake", function()
  it("computes RFC 6455's example Sec-WebSocket-Accept", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", handshake.accept_key(KEY))
  end)

  it("computes SHA-1 test vectors (FIPS 180 / RFC 3174)", function()
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(handshake.sha1("")))
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(handshake.sha1("abc")))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      hex(handshake.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", hex(handshake.sha1(string.rep("a", 1000000))))
  end)

  it("encodes base64 with padding (RFC 4648 vectors)", function()
    local cases = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
      foobar = "Zm9vYmFy" }
    for input, want in pairs(cases) do assert.equal(want, handshake.base64(input)) end
  end)

  it("accepts a valid request and returns key, subprotocols and extension offers", function()
    local req = handshake.check("GET", "1.1", headers {
      { "sec-websocket-protocol", "chat, superchat" },
      { "sec-websocket-protocol", "v3" },
      { "sec-websocket-extensions", "permessage-deflate; client_max_window_bits" },
    })
    assert.equal(KEY, req.key)
    assert.same({ "chat", "superchat", "v3" }, req.subprotocols)
    assert.same({ "permessage-deflate; client_max_window_bits" }, req.extensions)
  end)

  it("matches Upgrade and Connection tokens case-insensitively and inside lists", function()
    local h = headers()
    h[2] = { "upgrade", "WebSocket" }
    h[3] = { "connection", "keep-alive, Upgrade" }
    assert.truthy(handshake.check("GET", "1.1", h))
    assert.is_true(handshake.is_upgrade(h))
    assert.is_false(handshake.is_upgrade { { "upgrade", "h2c" } })
  end)

  local bad = {
    { "a POST", function() return "POST", "1.1", headers() end },
    { "HTTP/1.0", function() return "GET", "1.0", headers() end },
    { "no Upgrade header", function() return "GET", "1.1", headers(nil, "upgrade") end },
    { "Upgrade: h2c", function() return "GET", "1.1", headers({ { "upgrade", "h2c" } }, "upgrade") end },
    { "no Connection: upgrade", function() return "GET", "1.1", headers(nil, "connection") end },
    { "Connection: keep-alive only",
      function() return "GET", "1.1", headers({ { "connection", "keep-alive" } }, "connection") end },
    { "no key", function() return "GET", "1.1", headers(nil, "sec-websocket-key") end },
    { "a key that is not 16 bytes of base64",
      function() return "GET", "1.1", headers({ { "sec-websocket-key", "abc" } }, "sec-websocket-key") end },
    { "a 24-character key with bad padding bits", function()
      return "GET", "1.1", headers({ { "sec-websocket-key", "dGhlIHNhbXBsZSBub25jZR==" } }, "sec-websocket-key")
    end },
    { "two keys", function() return "GET", "1.1", headers { { "sec-websocket-key", KEY } } end },
    { "no version", function() return "GET", "1.1", headers(nil, "sec-websocket-version") end },
    { "an invalid subprotocol", function() return "GET", "1.1", headers { { "sec-websocket-protocol", "a b" } } end },
  }
  for _, c in ipairs(bad) do
    it("answers 400 to " .. c[1], function()
      local req, status, extra, reason = handshake.check(c[2]())
      assert.is_nil(req)
      assert.equal(400, status)
      assert.same({}, extra)
      assert.is_string(reason)
    end)
  end

  for _, v in ipairs { "8", "12", "14", "13, 8", "abc" } do
    it("answers 426 with Sec-WebSocket-Version: 13 to version " .. v, function()
      local req, status, extra = handshake.check("GET", "1.1",
        headers({ { "sec-websocket-version", v } }, "sec-websocket-version"))
      assert.is_nil(req)
      assert.equal(426, status)
      assert.same({ { "sec-websocket-version", "13" } }, extra)
    end)
  end

  it("builds the 101 response with the subprotocol, extensions and extra headers", function()
    local r = handshake.accept_response(KEY, "chat", "permessage-deflate", { { "x-app", "1" } },
      { { "server", "luvicorn" } })
    assert.equal("HTTP/1.1 101 Switching Protocols\r\n", r:match("^[^\n]*\n"))
    assert.truthy(r:find("\r\nupgrade: websocket\r\n", 1, true))
    assert.truthy(r:find("\r\nconnection: Upgrade\r\n", 1, true))
    assert.truthy(r:find("\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 1, true))
    assert.truthy(r:find("\r\nsec-websocket-protocol: chat\r\n", 1, true))
    assert.truthy(r:find("\r\nsec-websocket-extensions: permessage-deflate\r\n", 1, true))
    assert.truthy(r:find("\r\nx-app: 1\r\n", 1, true))
    assert.truthy(r:find("\r\nserver: luvicorn\r\n", 1, true))
    assert.equal("\r\n\r\n", r:sub(-4))
    local plain = handshake.accept_response(KEY)
    assert.is_nil(plain:find("sec-websocket-protocol", 1, true))
    assert.is_nil(plain:find("sec-websocket-extensions", 1, true))
  end)

  it("accepts ready-made header lines as defaults", function()
    local r = handshake.accept_response(KEY, nil, nil, nil, "date: x\r\nserver: luvicorn\r\n")
    assert.truthy(r:find("\r\ndate: x\r\nserver: luvicorn\r\n", 1, true))
  end)

  it("builds a short error response that closes the connection", function()
    local r = handshake.error_response(426, "nope\n", { { "sec-websocket-version", "13" } })
    assert.equal("HTTP/1.1 426 Upgrade Required\r\n", r:match("^[^\n]*\n"))
    assert.truthy(r:find("\r\nsec-websocket-version: 13\r\n", 1, true))
    assert.truthy(r:find("\r\ncontent-length: 5\r\n", 1, true))
    assert.truthy(r:find("\r\nconnection: close\r\n", 1, true))
    assert.equal("\r\n\r\nnope\n", r:sub(-9))
  end)

  it("checks app headers, naming the function", function()
    assert.has_no_error(function() handshake.check_headers("send", { { "x-a", "b" } }) end)
    assert.has_error(function() handshake.check_headers("send", { { "bad name", "b" } }) end,
      'send: invalid header name "bad name"')
    assert.has_error(function() handshake.check_headers("send", { { "x", "a\r\nb" } }) end,
      'send: invalid value for header "x"')
    assert.has_error(function() handshake.check_headers("send", "x") end,
      "send: headers must be an array of {name, value}")
  end)
end)
