local lasgi = require "lasgi"
local formparsers = require "lasgi.formparsers"
local ds = require "lasgi.datastructures"

local function form_app(opts)
  return lasgi.App{ routes = { lasgi.Route("/", function(req)
    local form = req:form(opts)
    local out = {}
    for name, v in form:items() do
      if type(v) == "table" then
        out[#out + 1] = { name = name, filename = v.filename, type = v.content_type, size = v.size,
                          in_file = v:in_file(), content = v:read() }
      else
        out[#out + 1] = { name = name, value = v }
      end
    end
    return lasgi.JSONResponse(out)
  end, { methods = { "POST" } }) } }
end

local BODY = table.concat({
  "preamble ignored\r\n",
  "--XyZ\r\n",
  'Content-Disposition: form-data; name="title"\r\n\r\n',
  "Hello\r\n--not the boundary\r\n",
  "--XyZ\r\n",
  'Content-Disposition: form-data; name="doc"; filename="a.txt"\r\n',
  "Content-Type: text/plain\r\n\r\n",
  "file one\r\n",
  "--XyZ\r\n",
  'Content-Disposition: form-data; name="doc"; filename="b \\"q\\".bin"\r\n\r\n',
  "\0\1\2\r\n\r\n",
  "--XyZ--\r\n",
  "epilogue",
})

describe("lasgi.formparsers", function()
  it("parses a multipart body with two files and a field, however it is split", function()
    local expected = {
      { name = "title", value = "Hello\r\n--not the boundary" },
      { name = "doc", filename = "a.txt", type = "text/plain", size = 8, in_file = false, content = "file one" },
      { name = "doc", filename = 'b "q".bin', type = "application/octet-stream", size = 5, in_file = false,
        content = "\0\1\2\r\n" },
    }
    local client = lasgi.TestClient(form_app())
    for _, size in ipairs({ 1, 2, 3, 7, 64, #BODY }) do
      local r = client:post("/", { content = BODY, chunk_size = size,
        headers = { ["content-type"] = 'multipart/form-data; boundary="XyZ"' } })
      assert.equal(200, r.status)
      assert.same(expected, r:json())
    end
  end)

  it("encodes files and fields from the test client", function()
    local r = lasgi.TestClient(form_app()):post("/", {
      data = { note = "n" },
      files = { { "up", { filename = "x.csv", content = "1,2\n", content_type = "text/csv" } },
                { "up", { filename = "y.csv", content = "3,4\n", content_type = "text/csv" } } },
    })
    local v = r:json()
    assert.equal(3, #v)
    assert.same({ name = "note", value = "n" }, v[1])
    assert.equal("x.csv", v[2].filename)
    assert.equal("3,4\n", v[3].content)
  end)

  it("spools files past the threshold to a temporary file", function()
    local big = ("0123456789"):rep(1000)
    local r = lasgi.TestClient(form_app({ spool_threshold = 1000 })):post("/", {
      files = { small = { filename = "s", content = "tiny" }, big = { filename = "b", content = big } },
      chunk_size = 333,
    })
    local v = r:json()
    assert.equal("big", v[1].name)
    assert.is_true(v[1].in_file)
    assert.equal(10000, v[1].size)
    assert.equal(big, v[1].content)
    assert.is_false(v[2].in_file)
  end)

  it("parses urlencoded forms", function()
    local r = lasgi.TestClient(form_app()):post("/", { data = { a = { "1", "2" }, b = "x y&z" } })
    assert.same({ { name = "a", value = "1" }, { name = "a", value = "2" }, { name = "b", value = "x y&z" } }, r:json())
  end)

  it("gives an empty form for other content types", function()
    assert.same({}, lasgi.TestClient(form_app()):post("/", { content = "x" }):json())
  end)

  it("answers 400 for malformed or truncated multipart and too many parts", function()
    local client = lasgi.TestClient(form_app({ max_files = 1 }))
    local h = { ["content-type"] = "multipart/form-data; boundary=XyZ" }
    local r = client:post("/", { content = BODY:sub(1, 120), headers = h })
    assert.equal(400, r.status)
    assert.equal("Multipart body ended before its closing delimiter", r.text)
    r = client:post("/", { content = BODY, headers = h })
    assert.equal(400, r.status)
    assert.equal("Too many files. Maximum number of files is 1.", r.text)
    r = client:post("/", { content = "--XyZ\r\nX-Nope: 1\r\n\r\nv\r\n--XyZ--\r\n", headers = h })
    assert.equal(400, r.status)
    r = client:post("/", { content = "x", headers = { ["content-type"] = "multipart/form-data" } })
    assert.equal(400, r.status)
    assert.equal("Missing or invalid multipart boundary", r.text)
  end)

  it("answers 413 when a field part or the whole body is too large", function()
    local r = lasgi.TestClient(form_app({ max_part_size = 3 })):post("/", { files = { f = "big file is fine" },
      data = { field = "too long" } })
    assert.equal(413, r.status)
    r = lasgi.TestClient(form_app({ max_size = 50 })):post("/", { files = { f = ("x"):rep(100) } })
    assert.equal(413, r.status)
  end)

  it("parses option headers with quoting and RFC 5987 values", function()
    local main, params = formparsers.parse_options_header(
      [[Form-Data; name="a;b"; filename*=utf-8''%C3%A9t%C3%A9.txt; filename="fallback"; x=plain ]])
    assert.equal("form-data", main)
    assert.equal("a;b", params.name)
    assert.equal("été.txt", params.filename)
    assert.equal("plain", params.x)
  end)

  it("round-trips random parts split at random points (seeded)", function()
    math.randomseed(20261121)
    local alphabet = { "\r", "\n", "-", "B", "o", "u", "\0", "x", "\255" }
    local function random_bytes(n)
      local t = {}
      for i = 1, n do t[i] = alphabet[math.random(#alphabet)] end
      return table.concat(t)
    end
    for _ = 1, 200 do
      local boundary = "Bou" .. math.random(0, 99)
      local parts, body = {}, {}
      for i = 1, math.random(1, 4) do
        local content = random_bytes(math.random(0, 60))
        -- Content may look like a delimiter, only never like this boundary's own.
        while content:find("\r\n--" .. boundary, 1, true) or content:find("^--" .. boundary) do
          content = random_bytes(math.random(0, 60))
        end
        parts[i] = content
        body[#body + 1] = "--" .. boundary .. "\r\n"
        body[#body + 1] = ('Content-Disposition: form-data; name="f%d"; filename="f%d.bin"\r\n\r\n'):format(i, i)
        body[#body + 1] = content .. "\r\n"
      end
      body[#body + 1] = "--" .. boundary .. "--\r\n"
      local text = table.concat(body)
      local p = formparsers.multipart(boundary, { spool_threshold = 16 })
      local pos = 1
      while pos <= #text do
        local n = math.random(1, 17)
        p:feed(text:sub(pos, pos + n - 1))
        pos = pos + n
      end
      local form = p:finish()
      assert.equal(#parts, #form)
      for i, content in ipairs(parts) do
        local f = form:get("f" .. i)
        assert.equal(content, f:read())
        assert.equal(#content > 16, f:in_file())
      end
      form:close()
    end
  end)

  it("feeds a parser directly", function()
    local p = formparsers.multipart("b")
    p:feed("--b\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv\r\n--b--")
    local form = p:finish()
    assert.equal("v", form:get("k"))
    assert.equal(getmetatable(form), ds.FormData)
  end)
end)
