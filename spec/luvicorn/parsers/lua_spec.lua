-- The request-head parser contract (see lua/luvicorn/parsers/lua.lua), run over every implementation:
-- the pure-Lua one always, the native one (uv.http_parse_head of luvrs) when it is there.
local parsers = require("luvicorn.parsers")

local ok_uv, uv = pcall(require, "luvrs")
if not ok_uv then uv = nil end

for _, impl in ipairs(parsers.available(uv)) do
  local parse = impl.parse_head
  local function p(buf, max_head, max_headers) return parse(buf, max_head or 16384, max_headers or 100) end

  describe("parse_head (" .. impl.name .. ")", function()
    it("parses a simple GET", function()
      local req = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"
      local consumed, method, target, minor, headers = p(req)
      assert.are.equal(#req, consumed)
      assert.are.equal("GET", method)
      assert.are.equal("/a?b=1", target)
      assert.are.equal(1, minor)
      assert.are.same({ { "host", "x" } }, headers)
    end)

    it("reports consumed bytes only up to the end of the head", function()
      local consumed = p("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabcGET")
      assert.are.equal(#"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", consumed)
    end)

    it("returns HTTP/1.0 as minor 0 and no headers as an empty array", function()
      local _, _, _, minor, headers = p("GET / HTTP/1.0\r\n\r\n")
      assert.are.equal(0, minor)
      assert.are.same({}, headers)
    end)

    it("lower-cases names, trims values, keeps order and duplicates", function()
      local _, _, _, _, headers = p("GET / HTTP/1.1\r\nX-A:  1 \r\nx-a:\t2\t\r\nEmpty:\r\nHost: h\r\n\r\n")
      assert.are.same({ { "x-a", "1" }, { "x-a", "2" }, { "empty", "" }, { "host", "h" } }, headers)
    end)

    it("keeps inner spaces and obs-text bytes in values", function()
      local _, _, _, _, headers = p("GET / HTTP/1.1\r\nUser-Agent: a b \t c \xe9\r\nX: \t \r\n\r\n")
      assert.are.same({ { "user-agent", "a b \t c \xe9" }, { "x", "" } }, headers)
    end)

    it("skips leading empty lines", function()
      local req = "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"
      local consumed, method = p(req)
      assert.are.equal(#req, consumed)
      assert.are.equal("GET", method)
    end)

    it("returns nil while the head is incomplete", function()
      local full = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
      for i = 0, #full - 1 do
        assert.is_nil(p(full:sub(1, i)), "prefix of length " .. i)
      end
    end)

    local rejections = {
      { "no version", "GET /\r\n\r\n", 400, "Invalid request line" },
      { "two spaces", "GET  / HTTP/1.1\r\n\r\n", 400, "Invalid request line" },
      { "lower-case HTTP", "GET / http/1.1\r\n\r\n", 400, "Invalid request line" },
      { "bad method", "GE(T / HTTP/1.1\r\n\r\n", 400, "Invalid request line" },
      { "HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 505, "Unsupported HTTP version" },
      { "HTTP/1.2", "GET / HTTP/1.2\r\n\r\n", 505, "Unsupported HTTP version" },
      { "HTTP/1.10", "GET / HTTP/1.10\r\n\r\n", 505, "Unsupported HTTP version" },
      { "NUL byte", "GET / HTTP/1.1\r\nA: \0\r\n\r\n", 400, "Invalid header line" },
      { "DEL in target", "GET /\127 HTTP/1.1\r\n\r\n", 400, "Invalid request line" },
      { "CTL in method", "G\1T / HTTP/1.1\r\n\r\n", 400, "Invalid request line" },
      { "tab in target", "GET /\t HTTP/1.1\r\n\r\n", 400, "Invalid request line" },
      { "NUL (incomplete)", "GET /\0", 400, "Invalid character in request head" },
      { "bare LF in header (complete)", "GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n", 400, "Invalid header line" },
      { "bare CR in header", "GET / HTTP/1.1\r\nA: b\rC: d\r\n\r\n", 400, "Invalid header line" },
      { "obs-fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400, "Obsolete line folding in header" },
      { "space before colon", "GET / HTTP/1.1\r\nA : b\r\n\r\n", 400, "Invalid header line" },
      { "no colon", "GET / HTTP/1.1\r\nAb\r\n\r\n", 400, "Invalid header line" },
      { "empty name", "GET / HTTP/1.1\r\n: b\r\n\r\n", 400, "Invalid header line" },
      { "bare LF (incomplete)", "GET / HTTP/1.1\nHost: x\n", 400, "Invalid line ending in request head" },
      { "TLS hello (incomplete)", "\22\3\1\0\165\1\0\0", 400, "Invalid character in request head" },
    }
    for _, case in ipairs(rejections) do
      it("rejects " .. case[1] .. " with " .. case[3], function()
        local ok, status, reason = p(case[2])
        assert.are.equal(false, ok)
        assert.are.equal(case[3], status)
        assert.are.equal(case[4], reason)
      end)
    end

    it("answers 414 when the request line alone is over the limit", function()
      local ok, status, reason = p("GET /" .. ("a"):rep(100), 64)
      assert.are.same({ false, 414, "Request line too long" }, { ok, status, reason })
      ok, status = p("GET /" .. ("a"):rep(100) .. " HTTP/1.1\r\n\r\n", 64)
      assert.are.same({ false, 414 }, { ok, status })
    end)

    it("answers 431 when the head is over the limit but the request line is not", function()
      local ok, status, reason = p("GET / HTTP/1.1\r\nA: " .. ("b"):rep(100), 64)
      assert.are.same({ false, 431, "Request head too large" }, { ok, status, reason })
      ok, status = p("GET / HTTP/1.1\r\nA: " .. ("b"):rep(100) .. "\r\n\r\n", 64)
      assert.are.same({ false, 431 }, { ok, status })
    end)

    it("accepts a head of exactly max_head bytes", function()
      local req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
      assert.are.equal(#req, p(req, #req))
      local ok, status = p(req, #req - 1)
      assert.are.same({ false, 431 }, { ok, status })
    end)

    it("answers 431 past max_headers", function()
      local req = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
      assert.are.equal(#req, p(req, 16384, 3))
      local ok, status, reason = p(req, 16384, 2)
      assert.are.same({ false, 431, "Too many headers" }, { ok, status, reason })
    end)

    it("accepts every tchar in methods and names", function()
      local tchars = "!#$%&'*+-.^_`|~09azAZ"
      local consumed, method, _, _, headers = p(tchars .. " * HTTP/1.1\r\n" .. tchars .. ": v\r\n\r\n")
      assert.is_number(consumed)
      assert.are.equal(tchars, method)
      assert.are.equal(tchars:lower(), headers[1][1])
    end)
  end)
end
