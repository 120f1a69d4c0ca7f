-- Socket-free specs of RFC 6455 framing: parsing in pieces, the three length encodings, masking, the
-- protocol violations the parser detects, and close payloads.
local frames = require "luvicorn.websocket.frames"

local KEY = "\x37\xfa\x21\x3d"

local function bytewise_mask(data, key)
  local out = {}
  for i = 1, #data do
    out[i] = string.char(data:byte(i) ~ key:byte((i - 1) % 4 + 1))
  end
  return table.concat(out)
end

local function parse_all(bytes, opts)
  local p = frames.new_parser(opts)
  p:feed(bytes)
  local out = {}
  while true do
    local f, code, msg = p:next()
    if not f then return out, code, msg end
    out[#out + 1] = f
  end
end

describe("websocket frames", function()
  describe("mask", function()
    it("matches the RFC 6455 5.7 example (masked 'Hello')", function()
      local masked = "\x7f\x9f\x4d\x51\x58"
      assert.equal("Hello", frames.mask(masked, KEY))
    end)

    it("agrees with a byte-by-byte reference at every length and alignment", function()
      local data = {}
      for i = 1, 700 do data[i] = string.char((i * 131 + 7) % 256) end
      data = table.concat(data)
      for n = 0, 300 do
        local s = data:sub(1, n)
        assert.equal(bytewise_mask(s, KEY), frames.mask(s, KEY), "length " .. n)
      end
      assert.equal(bytewise_mask(data, "\255\0\128\1"), frames.mask(data, "\255\0\128\1"))
    end)

    it("is its own inverse", function()
      local s = string.rep("payload \0\255", 1000)
      assert.equal(s, frames.mask(frames.mask(s, KEY), KEY))
    end)

    it("rejects a bad key", function()
      assert.has_error(function() frames.mask("x", "abc") end, "frames.mask: key must be a 4-byte string")
    end)
  end)

  describe("parser", function()
    it("parses the RFC example frames: unmasked text, masked text, ping, pong", function()
      local out = parse_all("\x81\x05Hello", { require_mask = false })
      assert.same({ { fin = true, rsv1 = false, opcode = 1, payload = "Hello" } }, out)
      out = parse_all("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
      assert.equal("Hello", out[1].payload)
      out = parse_all("\x89\x05Hello\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", { require_mask = false })
      assert.equal(9, out[1].opcode)
      assert.equal(10, out[2].opcode)
      assert.equal("Hello", out[2].payload)
    end)

    it("parses a fragmented message (RFC 'Hel' + 'lo')", function()
      local out = parse_all("\x01\x03Hel\x80\x02lo", { require_mask = false })
      assert.equal(2, #out)
      assert.is_false(out[1].fin)
      assert.equal(1, out[1].opcode)
      assert.is_true(out[2].fin)
      assert.equal(0, out[2].opcode)
    end)

    for _, len in ipairs { 0, 1, 125, 126, 127, 65535, 65536, 70000 } do
      it("round-trips a masked payload of " .. len .. " bytes (length encoding by size)", function()
        local payload = string.rep("x", len)
        local bytes = frames.encode(frames.BINARY, payload, true, false, KEY)
        local hlen = len < 126 and 2 or (len < 65536 and 4 or 10)
        assert.equal(hlen + 4 + len, #bytes)
        local out = parse_all(bytes)
        assert.equal(1, #out)
        assert.equal(payload, out[1].payload)
      end)
    end

    it("uses the 7-bit, 16-bit and 64-bit length forms in server headers", function()
      assert.equal("\x82\x7d", frames.header(2, 125))
      assert.equal("\x82\x7e\x00\x7e", frames.header(2, 126))
      assert.equal("\x82\x7e\xff\xff", frames.header(2, 65535))
      assert.equal("\x82\x7f\0\0\0\0\0\1\0\0", frames.header(2, 65536))
      assert.equal("\x01\x03", frames.header(1, 3, false))
      assert.equal("\xc1\x03", frames.header(1, 3, true, true))
    end)

    it("accepts a frame fed one byte at a time, returning nil until it is complete", function()
      local bytes = frames.encode(frames.TEXT, string.rep("ab", 200), true, false, KEY)
        .. frames.encode(frames.PING, "p", true, false, KEY)
      local p = frames.new_parser()
      local got, first_at = {}, nil
      for i = 1, #bytes do
        p:feed(bytes:sub(i, i))
        local f = p:next()
        if f then
          got[#got + 1] = f
          first_at = first_at or i
        end
      end
      assert.equal(2, #got)
      assert.equal(#bytes - 7, first_at) -- the text frame is complete exactly at its last byte
      assert.equal(string.rep("ab", 200), got[1].payload)
      assert.equal("p", got[2].payload)
      assert.equal(0, p:buffered())
    end)

    it("handles many frames in one chunk and one frame over many chunks", function()
      local parts = {}
      for i = 1, 50 do parts[i] = frames.encode(frames.TEXT, "m" .. i, true, false, KEY) end
      local out = parse_all(table.concat(parts))
      assert.equal(50, #out)
      assert.equal("m50", out[50].payload)
      local big = string.rep("0123456789abcdef", 8192)
      local bytes = frames.encode(frames.BINARY, big, true, false, KEY)
      local p = frames.new_parser()
      for i = 1, #bytes, 1000 do
        assert.is_nil(p:next())
        p:feed(bytes:sub(i, i + 999))
      end
      assert.equal(big, p:next().payload)
    end)

    local violations = {
      { "an unmasked client frame", "\x81\x05Hello", 1002 },
      { "RSV1 without an extension", frames.encode(1, "x", true, true, KEY), 1002 },
      { "RSV2", "\xa1\x80" .. KEY, 1002 },
      { "RSV3", "\x91\x80" .. KEY, 1002 },
      { "opcode 3", "\x83\x80" .. KEY, 1002 },
      { "opcode 7", "\x87\x80" .. KEY, 1002 },
      { "opcode 11", "\x8b\x80" .. KEY, 1002 },
      { "opcode 15", "\x8f\x80" .. KEY, 1002 },
      { "a fragmented ping", "\x09\x80" .. KEY, 1002 },
      { "a ping over 125 bytes", "\x89\xfe\x00\x7e" .. KEY .. string.rep("x", 126), 1002 },
      { "a close over 125 bytes", frames.header(8, 126, true, false, KEY), 1002 },
      { "a 64-bit length with its top bit set", "\x82\xff\x80\0\0\0\0\0\0\0" .. KEY, 1002 },
      { "RSV1 on a control frame even with deflate", frames.encode(9, "", true, true, KEY), 1002, true },
      { "RSV1 on a continuation frame", frames.encode(0, "", true, true, KEY), 1002, true },
    }
    for _, v in ipairs(violations) do
      it("rejects " .. v[1] .. " with " .. v[3], function()
        local out, code, msg = parse_all(v[2], { allow_rsv1 = v[4] })
        assert.equal(0, #out)
        assert.equal(v[3], code)
        assert.is_string(msg)
      end)
    end

    it("applies limit_rsv1 to compressed (RSV1) frames and limit to the others", function()
      local p = frames.new_parser { allow_rsv1 = true, limit = 10, limit_rsv1 = 20 }
      p:feed(frames.encode(frames.BINARY, string.rep("z", 20), true, true, KEY))
      assert.equal(20, #p:next().payload)
      p:feed(frames.encode(frames.BINARY, string.rep("z", 11), true, false, KEY))
      assert.equal(1009, select(2, p:next()))
    end)

    it("accepts RSV1 on a data frame when the extension allows it", function()
      local out = parse_all(frames.encode(1, "x", true, true, KEY), { allow_rsv1 = true })
      assert.is_true(out[1].rsv1)
    end)

    it("rejects a data frame over the limit (1009) from its header, before the payload arrives", function()
      local p = frames.new_parser { limit = 1000 }
      p:feed(frames.header(frames.BINARY, 1001, true, false, KEY))
      local f, code = p:next()
      assert.is_nil(f)
      assert.equal(1009, code)
      p = frames.new_parser { limit = 1000 }
      p:feed(frames.header(frames.BINARY, 1 << 40, true, false, KEY))
      assert.equal(1009, select(2, p:next()))
      p = frames.new_parser { limit = 1000 }
      p:feed(frames.encode(frames.BINARY, string.rep("x", 1000), true, false, KEY))
      assert.equal(1000, #p:next().payload)
    end)
  end)

  describe("close payloads", function()
    it("builds and parses code + reason", function()
      local payload = frames.close_payload(1000, "bye")
      assert.equal("\x03\xe8bye", payload)
      assert.same({ 1000, "bye" }, { frames.parse_close(payload) })
      assert.equal("", frames.close_payload(nil))
    end)

    it("reads an empty close as 1005", function()
      assert.same({ 1005, "" }, { frames.parse_close("") })
    end)

    it("rejects a 1-byte payload with 1002", function()
      local c, err = frames.parse_close("\3")
      assert.is_nil(c)
      assert.equal(1002, err)
    end)

    for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 } do
      it("rejects close code " .. code .. " with 1002", function()
        local c, err = frames.parse_close(string.pack(">I2", code))
        assert.is_nil(c)
        assert.equal(1002, err)
      end)
    end

    for _, code in ipairs { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
      4000, 4999 } do
      it("accepts close code " .. code, function()
        assert.equal(code, (frames.parse_close(string.pack(">I2", code))))
      end)
    end

    it("rejects a reason that is not UTF-8 with 1007", function()
      local c, err = frames.parse_close("\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")
      assert.is_nil(c)
      assert.equal(1007, err)
    end)

    it("cuts a long reason to fit a control frame, at a character boundary", function()
      local payload = frames.close_payload(1000, string.rep("é", 100))
      assert.is_true(#payload <= 125)
      assert.truthy(utf8.len(payload:sub(3)))
    end)
  end)
end)
