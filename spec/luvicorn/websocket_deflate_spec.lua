-- Socket-free specs of permessage-deflate (RFC 7692): offer parsing, negotiation of every parameter, and
-- the per-message codec over the uv.new_deflate / uv.new_inflate primitive. The primitive is faked with
-- "stored" DEFLATE blocks (valid raw DEFLATE, no compression), which is enough to check framing of the
-- sync-flush tail, context resets and error mapping; a real inflater is checked against RFC 7692's example
-- when luvrs provides one.
local deflate = require "luvicorn.websocket.deflate"

-- A fake of the luvrs primitive. Records the options and the calls.
local function fake_uv()
  local log = { deflaters = {}, inflaters = {} }
  local uv = { log = log }
  function uv.new_deflate(opts)
    local d = { opts = opts, resets = 0 }
    log.deflaters[#log.deflaters + 1] = d
    function d.write(_, data, flush)
      assert(flush == "sync")
      local out = {}
      for i = 1, #data, 65535 do
        local chunk = data:sub(i, i + 65534)
        out[#out + 1] = "\0" .. string.pack("<I2I2", #chunk, (~#chunk) & 0xFFFF) .. chunk
      end
      out[#out + 1] = "\0\0\0\255\255" -- the sync flush's empty stored block
      return table.concat(out)
    end
    function d.reset(self) self.resets = self.resets + 1 end
    return d
  end
  function uv.new_inflate(opts)
    local i = { opts = opts, resets = 0 }
    log.inflaters[#log.inflaters + 1] = i
    function i.write(self, data)
      local out, pos = {}, 1
      while pos <= #data do
        if #data - pos + 1 < 5 then return nil, "EINVAL" end
        local hdr, len, nlen = string.unpack("<BI2I2", data, pos)
        if hdr > 1 or len ~= (~nlen) & 0xFFFF then return nil, "EINVAL" end
        out[#out + 1] = data:sub(pos + 5, pos + 4 + len)
        pos = pos + 5 + len
      end
      local s = table.concat(out)
      if self.opts.max_output and #s > self.opts.max_output then return nil, "EMSGSIZE" end
      return s
    end
    function i.reset(self) self.resets = self.resets + 1 end
    return i
  end
  return uv
end

describe("websocket permessage-deflate", function()
  describe("offers", function()
    it("parses names, flags, values, quoted values and several offers", function()
      local offers = deflate.parse_offers {
        'permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo',
        "permessage-deflate",
      }
      assert.equal(3, #offers)
      assert.equal("permessage-deflate", offers[1].name)
      assert.same({ client_max_window_bits = true, server_max_window_bits = "10" }, offers[1].params)
      assert.is_true(offers[1].valid)
      assert.equal("x-foo", offers[2].name)
      assert.same({}, offers[3].params)
    end)

    it("marks a repeated parameter as invalid", function()
      local offers = deflate.parse_offers {
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      }
      assert.is_false(offers[1].valid)
    end)
  end)

  describe("negotiation", function()
    local function neg(value, opts)
      return deflate.negotiate({ value }, opts)
    end

    it("accepts a plain offer", function()
      local r, p = neg("permessage-deflate")
      assert.equal("permessage-deflate", r)
      assert.same({ server_no_context_takeover = false, client_no_context_takeover = false,
        server_max_window_bits = 15 }, p)
    end)

    it("agrees to server_no_context_takeover and echoes client_no_context_takeover", function()
      local r, p = neg("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
      assert.equal("permessage-deflate; server_no_context_takeover; client_no_context_takeover", r)
      assert.is_true(p.server_no_context_takeover)
      assert.is_true(p.client_no_context_takeover)
    end)

    it("compresses with the server window the client asks for", function()
      local r, p = neg("permessage-deflate; server_max_window_bits=10")
      assert.equal("permessage-deflate; server_max_window_bits=10", r)
      assert.equal(10, p.server_max_window_bits)
    end)

    it("accepts client_max_window_bits with or without a value, and answers nothing for it", function()
      assert.equal("permessage-deflate", (neg("permessage-deflate; client_max_window_bits")))
      assert.equal("permessage-deflate", (neg("permessage-deflate; client_max_window_bits=9")))
    end)

    it("limits the client window only when the client offered client_max_window_bits", function()
      assert.equal("permessage-deflate; client_max_window_bits=12",
        (neg("permessage-deflate; client_max_window_bits", { client_max_window_bits = 12 })))
      assert.equal("permessage-deflate", (neg("permessage-deflate", { client_max_window_bits = 12 })))
    end)

    it("may add server_no_context_takeover by its own choice", function()
      assert.equal("permessage-deflate; server_no_context_takeover",
        (neg("permessage-deflate", { server_no_context_takeover = true })))
    end)

    local declined = {
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=16",
      "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; server_max_window_bits=8",
      "permessage-deflate; client_max_window_bits=16",
      "permessage-deflate; server_no_context_takeover=1",
      "permessage-deflate; unknown_param",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "x-webkit-deflate-frame",
    }
    for _, offer in ipairs(declined) do
      it("declines " .. offer, function()
        assert.is_nil(neg(offer))
      end)
    end

    it("falls back to the next acceptable offer", function()
      local r, p = deflate.negotiate {
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover",
      }
      assert.equal("permessage-deflate; client_no_context_takeover", r)
      assert.is_true(p.client_no_context_takeover)
    end)

    it("negotiates nothing without an offer", function()
      assert.is_nil(deflate.negotiate {})
    end)
  end)

  describe("codec", function()
    it("is not available on a loop module without the primitive (the real luv)", function()
      assert.is_false(deflate.available {})
      assert.is_false(deflate.available(nil))
      assert.is_true(deflate.available(fake_uv()))
      assert.has_error(function() deflate.new({}, {}) end, "deflate.new: uv has no new_deflate/new_inflate")
    end)

    it("creates raw streams with the agreed window and the size limit", function()
      local uv = fake_uv()
      local _, p = deflate.negotiate { "permessage-deflate; server_max_window_bits=11" }
      deflate.new(uv, p, 1000)
      assert.same({ format = "raw", level = 6, window_bits = 11 }, uv.log.deflaters[1].opts)
      assert.same({ format = "raw", window_bits = 15, max_output = 1000 }, uv.log.inflaters[1].opts)
    end)

    it("strips the 00 00 ff ff tail when compressing and restores it when decompressing", function()
      local uv = fake_uv()
      local _, p = deflate.negotiate { "permessage-deflate" }
      local c = deflate.new(uv, p, 1 << 20)
      local payload = c:compress("Hello")
      assert.are_not.equal("\0\0\255\255", payload:sub(-4))
      assert.equal("Hello", c:decompress(payload))
      assert.equal("", c:decompress(c:compress("")))
      local big = string.rep("0123456789", 20000)
      assert.equal(big, c:decompress(c:compress(big)))
    end)

    it("resets contexts after each message only when no_context_takeover was agreed", function()
      local uv = fake_uv()
      local _, p = deflate.negotiate { "permessage-deflate" }
      local c = deflate.new(uv, p)
      c:decompress(c:compress("a"))
      assert.equal(0, uv.log.deflaters[1].resets)
      assert.equal(0, uv.log.inflaters[1].resets)
      _, p = deflate.negotiate { "permessage-deflate; server_no_context_takeover; client_no_context_takeover" }
      c = deflate.new(uv, p)
      c:decompress(c:compress("a"))
      c:decompress(c:compress("b"))
      assert.equal(2, uv.log.deflaters[2].resets)
      assert.equal(2, uv.log.inflaters[2].resets)
    end)

    it("maps a message over the limit to 1009 and corrupt data to 1007", function()
      local uv = fake_uv()
      local _, p = deflate.negotiate { "permessage-deflate" }
      local c = deflate.new(uv, p, 10)
      local out, code = c:decompress(c:compress(string.rep("x", 11)))
      assert.is_nil(out)
      assert.equal(1009, code)
      out, code = c:decompress("\7garbage")
      assert.is_nil(out)
      assert.equal(1007, code)
    end)

    local has_luvrs, luvrs = pcall(require, "luvrs")
    local real = has_luvrs and deflate.available(luvrs)
    ;(real and it or pending)("decompresses RFC 7692's example 'Hello' with the real primitive", function()
      local _, p = deflate.negotiate { "permessage-deflate" }
      local c = deflate.new(luvrs, p, 100000)
      assert.equal("Hello", c:decompress("\xf2\x48\xcd\xc9\xc9\x07\x00"))
      -- The same message again, using the context of the first (RFC 7692 7.2.3.2).
      assert.equal("Hello", c:decompress("\xf2\x00\x11\x00\x00"))
      local msg = string.rep("compressible text ", 1000)
      local z = c:compress(msg)
      assert.is_true(#z < #msg / 10)
      assert.is_true(c:decompress(z) == msg)
    end)

    ;(real and it or pending)("sends uncompressed when the primitive cannot use the agreed window", function()
      local _, p = deflate.negotiate { "permessage-deflate; server_max_window_bits=10" }
      local c = deflate.new(luvrs, p, 1000)
      local z = c:compress("Hello")
      if z then
        assert.equal("Hello", c:decompress(z)) -- this primitive honours small windows
      else
        assert.is_nil(z)
      end
    end)

    it("sends uncompressed when new_deflate refuses the window (nil, err)", function()
      local uv = fake_uv()
      local real_new = uv.new_deflate
      uv.new_deflate = function(opts)
        if opts.window_bits ~= 15 then return nil, "ENOTSUP: window_bits 15 only", "ENOTSUP" end
        return real_new(opts)
      end
      local _, p = deflate.negotiate { "permessage-deflate; server_max_window_bits=10" }
      local c = deflate.new(uv, p, 1000)
      assert.is_nil(c:compress("Hello"))
      assert.equal("Hello", c:decompress("\0\5\0\250\255Hello\0"))
    end)
  end)
end)
