local lasgi = require "lasgi"
local responses = require "lasgi.responses"
local loop = require "lasgi.loop"
local fixtures = require "fixtures"

local function serve(resp, opts)
  return lasgi.TestClient(function(scope, receive, send) return resp(scope, receive, send) end, opts)
end

describe("lasgi.responses", function()
  it("Response sets Content-Length and the media type with a charset for text", function()
    local r = serve(lasgi.Response("abc", 201, { ["x-a"] = "1" }, "text/csv")):get("/")
    assert.equal(201, r.status)
    assert.equal("abc", r.text)
    assert.equal("3", r.headers:get("content-length"))
    assert.equal("text/csv; charset=utf-8", r.headers:get("content-type"))
    assert.equal("1", r.headers:get("x-a"))
  end)

  it("accepts an options table", function()
    local r = serve(lasgi.HTMLResponse("<b>x</b>", { status = 202, headers = { { "x-b", "2" } } })):get("/")
    assert.equal(202, r.status)
    assert.equal("text/html; charset=utf-8", r.headers:get("content-type"))
    assert.equal("2", r.headers:get("x-b"))
  end)

  it("has no Content-Length for 204 and 304", function()
    assert.is_nil(serve(lasgi.Response(nil, 204)):get("/").headers:get("content-length"))
  end)

  it("JSONResponse encodes with lasgi.json", function()
    local r = serve(lasgi.JSONResponse({ items = lasgi.json.array(), none = lasgi.json.null })):get("/")
    assert.equal("application/json", r.headers:get("content-type"))
    assert.same({ items = {}, none = lasgi.json.null }, r:json())
    assert.matches('"items":%[%]', r.text)
    assert.has_error(function() lasgi.JSONResponse({ f = print }) end)
  end)

  it("RedirectResponse uses 307 by default and accepts 303 and 308 only among redirects", function()
    local r = serve(lasgi.RedirectResponse("/a b?x=1")):get("/", { follow_redirects = false })
    assert.equal(307, r.status)
    assert.equal("/a%20b?x=1", r.headers:get("location"))
    assert.equal(303, serve(lasgi.RedirectResponse("/", 303)):get("/x", { follow_redirects = false }).status)
    assert.equal(308, serve(lasgi.RedirectResponse("/", 308)):get("/x", { follow_redirects = false }).status)
    assert.has_error(function() lasgi.RedirectResponse("/", 200) end,
      "RedirectResponse: argument 'status' must be 301, 302, 303, 307 or 308")
  end)

  it("raises on wrong arguments, naming the function", function()
    assert.has_error(function() lasgi.Response(1) end, "Response: argument 'content' must be a string")
    assert.has_error(function() lasgi.PlainTextResponse("x", 99) end,
      "PlainTextResponse: argument 'status' must be an integer 100..999")
    assert.has_error(function() lasgi.StreamingResponse(1) end,
      "StreamingResponse: argument 'content' must be a function or an array")
    assert.has_error(function() lasgi.FileResponse(nil) end, "FileResponse: argument 'path' must be a string")
  end)

  describe("cookies", function()
    it("set_cookie and delete_cookie add Set-Cookie headers with every attribute", function()
      local resp = lasgi.PlainTextResponse("x")
      resp:set_cookie("a", "1", { max_age = 10, httponly = true, secure = true, samesite = "none", domain = "d.org",
                                  path = "/p", partitioned = true })
      resp:set_cookie("b", "2")
      resp:delete_cookie("c", { path = "/p" })
      local r = serve(resp):get("/")
      assert.same({
        "a=1; Domain=d.org; HttpOnly; Max-Age=10; Path=/p; SameSite=none; Secure; Partitioned",
        "b=2; Path=/; SameSite=lax",
        "c=; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/p; SameSite=lax",
      }, r.headers:get_all("set-cookie"))
      assert.same({ a = "1", b = "2", c = "" }, r:cookies())
    end)
  end)

  describe("StreamingResponse", function()
    it("sends each piece of an iterator or array as its own body event", function()
      local i = 0
      local r = serve(lasgi.StreamingResponse(function()
        i = i + 1
        if i <= 3 then return "part" .. i end
      end, 200, nil, "text/plain")):get("/")
      assert.equal("part1part2part3", r.text)
      assert.same({ "part1", "part2", "part3", "" }, r.chunks)
      assert.is_nil(r.headers:get("content-length"))
      assert.equal("ab", serve(lasgi.StreamingResponse({ "a", "b" })):get("/").text)
    end)

    it("stops iterating when the client is gone", function()
      local calls = 0
      local resp = lasgi.StreamingResponse(function() calls = calls + 1; return "x" end)
      local sent = 0
      resp({ type = "http", method = "GET" }, nil, function(ev)
        sent = sent + 1
        if ev.type == "http.response.body" and sent >= 3 then return nil, "disconnected" end
        return true
      end)
      assert.equal(2, calls)
    end)

    it("sends no body for HEAD", function()
      local r = serve(lasgi.StreamingResponse({ "a" })):head("/")
      assert.equal("", r.body)
    end)
  end)

  describe("FileResponse", function()
    local content = "0123456789abcdefghij" -- 20 bytes
    local path
    before_each(function() path = fixtures.tmpfile(content) end)
    after_each(function() os.remove(path) end)

    local function get(headers, opts, method)
      return serve(lasgi.FileResponse(path, opts), opts and opts.client)
        :request(method or "GET", "/", { headers = headers })
    end

    it("sends the file with type, length, ETag and Last-Modified", function()
      local r = get(nil, { media_type = "text/plain" })
      assert.equal(200, r.status)
      assert.equal(content, r.text)
      assert.equal("20", r.headers:get("content-length"))
      assert.equal("text/plain; charset=utf-8", r.headers:get("content-type"))
      assert.equal("bytes", r.headers:get("accept-ranges"))
      local uv = loop.get()
      if uv and uv.fs_stat then
        assert.matches('^"%x+%-14"$', r.headers:get("etag"))
        assert.matches("GMT$", r.headers:get("last-modified"))
      end
    end)

    it("guesses the type from the name and sets Content-Disposition", function()
      local r = get(nil, { filename = "report.pdf" })
      assert.equal("application/pdf", r.headers:get("content-type"))
      assert.equal('attachment; filename="report.pdf"', r.headers:get("content-disposition"))
      r = get(nil, { filename = "é.txt", content_disposition_type = "inline" })
      assert.equal("inline; filename*=utf-8''%C3%A9.txt", r.headers:get("content-disposition"))
    end)

    it("uses http.response.pathsend when the server offers it", function()
      local r = get(nil, { client = { extensions = { ["http.response.pathsend"] = {} } } })
      assert.equal(content, r.text)
      assert.equal(path, r.pathsend)
      -- not for ranges
      r = serve(lasgi.FileResponse(path), { extensions = { ["http.response.pathsend"] = {} } })
        :get("/", { headers = { range = "bytes=0-1" } })
      assert.is_nil(r.pathsend)
      assert.equal("01", r.text)
    end)

    it("can be sent more than once, ranges not leaking into later sends", function()
      local resp = lasgi.FileResponse(path)
      local c = serve(resp)
      assert.equal(206, c:get("/", { headers = { range = "bytes=0-1" } }).status)
      local r = c:get("/")
      assert.equal(200, r.status)
      assert.is_nil(r.headers:get("content-range"))
      assert.equal("20", r.headers:get("content-length"))
    end)

    it("answers HEAD with the headers only", function()
      local r = get(nil, nil, "HEAD")
      assert.equal(200, r.status)
      assert.equal("", r.body)
      assert.equal("20", r.headers:get("content-length"))
    end)

    it("serves single ranges as 206 with Content-Range", function()
      local cases = {
        { "bytes=0-4", "01234", "bytes 0-4/20" },
        { "bytes=5-", "56789abcdefghij", "bytes 5-19/20" },
        { "bytes=-3", "hij", "bytes 17-19/20" },
        { "bytes=15-100", "fghij", "bytes 15-19/20" },
        { "bytes=-100", content, "bytes 0-19/20" },
        { "bytes=19-19", "j", "bytes 19-19/20" },
        { "bytes=0-2, 1-4", "01234", "bytes 0-4/20" },   -- overlapping ranges merge
        { "bytes=0-1,2-3", "0123", "bytes 0-3/20" },      -- adjacent ranges merge
        { "bytes=0-1, 30-40", "01", "bytes 0-1/20" },     -- the unsatisfiable part is dropped
      }
      for _, c in ipairs(cases) do
        local r = get({ range = c[1] })
        assert.equal(206, r.status, c[1])
        assert.equal(c[2], r.text, c[1])
        assert.equal(c[3], r.headers:get("content-range"), c[1])
        assert.equal(tostring(#c[2]), r.headers:get("content-length"), c[1])
      end
    end)

    it("answers 416 with bytes */size when no range is satisfiable", function()
      for _, h in ipairs({ "bytes=20-", "bytes=100-200", "bytes=-0", "bytes=20-30, 40-" }) do
        local r = get({ range = h })
        assert.equal(416, r.status, h)
        assert.equal("bytes */20", r.headers:get("content-range"), h)
      end
    end)

    it("ignores malformed Range headers and other units (200, whole file)", function()
      for _, h in ipairs({ "bytes=5-2", "bytes=abc", "items=0-1", "bytes=", "bytes=--1", "bytes=1-2-3" }) do
        local r = get({ range = h })
        assert.equal(200, r.status, h)
        assert.equal(content, r.text, h)
      end
    end)

    it("serves several ranges as multipart/byteranges", function()
      local r = get({ range = "bytes=0-1, 10-12" })
      assert.equal(206, r.status)
      local boundary = r.headers:get("content-type"):match("^multipart/byteranges; boundary=(%w+)$")
      assert.is_string(boundary)
      local expected = ("--%s\r\ncontent-type: application/octet-stream\r\ncontent-range: bytes 0-1/20\r\n\r\n01"
        .. "\r\n--%s\r\ncontent-type: application/octet-stream\r\ncontent-range: bytes 10-12/20\r\n\r\nabc"
        .. "\r\n--%s--\r\n"):format(boundary, boundary, boundary)
      assert.equal(expected, r.text)
      assert.equal(tostring(#expected), r.headers:get("content-length"))
    end)

    it("answers ranges on HEAD with headers only", function()
      local r = get({ range = "bytes=2-3" }, nil, "HEAD")
      assert.equal(206, r.status)
      assert.equal("", r.body)
      assert.equal("bytes 2-3/20", r.headers:get("content-range"))
    end)

    -- A fixed stat result makes ETag and Last-Modified known, whatever the loop module offers.
    local fixed = { size = 20, mtime = 1700000000, type = "file" }
    local ETAG, LM = '"6553f100-14"', "Tue, 14 Nov 2023 22:13:20 GMT"

    it("derives ETag and Last-Modified from size and mtime", function()
      local r = get(nil, { stat = fixed })
      assert.equal(ETAG, r.headers:get("etag"))
      assert.equal(LM, r.headers:get("last-modified"))
    end)

    it("with the real luv loaded, takes ETag and Last-Modified from fs_stat (child process)", function()
      -- A child process, so that this busted process never holds two loop modules.
      local script = table.concat({
        "package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path",
        "local ok = pcall(require, 'luv') if not ok then print('no luv') return end",
        "local lasgi = require 'lasgi'",
        "local r = lasgi.TestClient(lasgi.FileResponse(arg[1])):get('/')",
        "local etag = r.headers:get('etag')",
        "local r2 = lasgi.TestClient(lasgi.FileResponse(arg[1])):get('/', { headers = { ['if-none-match'] = etag } })",
        "print(r.status, etag, r.headers:get('last-modified'), r2.status)",
      }, "\n")
      local out = fixtures.run_lua(script, path)
      if out:match("^no luv") then return pending("luv is not installed") end
      local status, etag, lm, status2 = out:match('^(%d+)\t("%x+%-14")\t(.- GMT)\t(%d+)')
      assert.equal("200", status, out)
      assert.is_string(etag, out)
      assert.is_string(lm, out)
      assert.equal("304", status2, out)
    end)

    it("honours If-Range only when it matches the ETag or the date", function()
      assert.equal(206, get({ range = "bytes=0-0", ["if-range"] = ETAG }, { stat = fixed }).status)
      assert.equal(206, get({ range = "bytes=0-0", ["if-range"] = LM }, { stat = fixed }).status)
      assert.equal(200, get({ range = "bytes=0-0", ["if-range"] = '"other"' }, { stat = fixed }).status)
    end)

    it("answers conditional requests with 304", function()
      local r = get({ ["if-none-match"] = ETAG }, { stat = fixed })
      assert.equal(304, r.status)
      assert.equal("", r.body)
      assert.equal(ETAG, r.headers:get("etag"))
      assert.equal(304, get({ ["if-none-match"] = 'W/"x", ' .. ETAG }, { stat = fixed }).status)
      assert.equal(304, get({ ["if-none-match"] = "*" }, { stat = fixed }).status)
      assert.equal(200, get({ ["if-none-match"] = '"x"' }, { stat = fixed }).status)
      assert.equal(304, get({ ["if-modified-since"] = LM }, { stat = fixed }).status)
      assert.equal(200, get({ ["if-modified-since"] = "Thu, 01 Jan 1970 00:00:00 GMT" }, { stat = fixed }).status)
      -- If-None-Match wins over If-Modified-Since
      assert.equal(200, get({ ["if-none-match"] = '"x"', ["if-modified-since"] = LM }, { stat = fixed }).status)
      assert.equal(200, get({ ["if-none-match"] = ETAG }, { stat = fixed, conditional = false }).status)
    end)

    it("streams large files in chunks", function()
      local big = ("x"):rep(150000)
      local p = fixtures.tmpfile(big)
      local r = serve(lasgi.FileResponse(p)):get("/")
      os.remove(p)
      assert.equal(big, r.text)
      assert.same({ 65536, 65536, 150000 - 2 * 65536 }, { #r.chunks[1], #r.chunks[2], #r.chunks[3] })
      assert.equal(3, #r.chunks) -- the last read carries more_body = false
    end)

    it("raises for a missing file", function()
      assert.has_error(function() serve(lasgi.FileResponse("/nonexistent/x")):get("/") end,
        "FileResponse: not a regular file: /nonexistent/x")
    end)
  end)

  it("stat gives size and kind", function()
    local p = fixtures.tmpfile("abc")
    local st = responses.stat(p)
    os.remove(p)
    assert.equal(3, st.size)
    assert.equal("file", st.type)
    assert.is_nil(responses.stat("/nonexistent/x"))
  end)

  it("is_response recognises every response class", function()
    assert.is_true(responses.is_response(lasgi.PlainTextResponse("")))
    assert.is_true(responses.is_response(lasgi.StreamingResponse({})))
    assert.is_false(responses.is_response({}))
    assert.is_false(responses.is_response("x"))
  end)
end)
