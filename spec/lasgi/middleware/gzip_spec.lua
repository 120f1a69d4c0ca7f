local lasgi = require "lasgi"
local gzip = require "lasgi.middleware.gzip"
local loop = require "lasgi.loop"
local fixtures = require "fixtures"

-- A stand-in deflate stream that shows what it was asked to do.
local function fake_factory(calls)
  return function(level)
    calls[#calls + 1] = "new:" .. level
    return { write = function(_, data, flush) return "<" .. data .. "|" .. flush .. ">" end }
  end
end

local BIG = ("lasgi "):rep(200) -- 1200 bytes

local function app_with(body, ctype, extra_headers)
  return function(scope, receive, send)
    local headers = { { "content-type", ctype or "text/plain" } }
    for _, h in ipairs(extra_headers or {}) do headers[#headers + 1] = h end
    if type(body) == "table" then
      lasgi.StreamingResponse(body, 200, headers)(scope, receive, send)
    else
      lasgi.Response(body, 200, headers)(scope, receive, send)
    end
  end
end

local function get(app, opts, accept)
  return lasgi.TestClient(gzip.new(app, opts)):get("/", { headers = { ["accept-encoding"] = accept or "gzip, br" } })
end

describe("lasgi.middleware.gzip", function()
  it("passes everything through unchanged without a deflate primitive", function()
    local r = get(app_with(BIG), { deflate = false })
    assert.equal(BIG, r.text)
    assert.is_nil(r.headers:get("content-encoding"))
    assert.equal("1200", r.headers:get("content-length"))
  end)

  it("passes through with the loop's default when the loop has no new_deflate", function()
    local uv = loop.get()
    if uv and uv.new_deflate then return pending("the loop module has new_deflate") end
    assert.is_nil(gzip.loop_deflate())
    local r = get(app_with(BIG))
    assert.equal(BIG, r.text)
    assert.is_nil(r.headers:get("content-encoding"))
  end)

  it("compresses a whole body at or above minimum_size, with finish", function()
    local calls = {}
    local r = get(app_with(BIG), { deflate = fake_factory(calls), compresslevel = 5 })
    assert.same({ "new:5" }, calls)
    assert.equal("<" .. BIG .. "|finish>", r.text)
    assert.equal("gzip", r.headers:get("content-encoding"))
    assert.equal("Accept-Encoding", r.headers:get("vary"))
    assert.equal(tostring(#r.text), r.headers:get("content-length"))
  end)

  it("leaves small bodies alone", function()
    local calls = {}
    local r = get(app_with("tiny"), { deflate = fake_factory(calls) })
    assert.equal("tiny", r.text)
    assert.same({}, calls)
    assert.is_nil(r.headers:get("content-encoding"))
    r = get(app_with(("x"):rep(10)), { deflate = fake_factory(calls), minimum_size = 10 })
    assert.equal("gzip", r.headers:get("content-encoding"))
  end)

  it("compresses streams piece by piece with sync flushes, then finishes", function()
    local r = get(app_with({ "a", "b" }), { deflate = fake_factory({}) })
    assert.same({ "<a|sync>", "<b|sync>", "<|finish>" }, r.chunks)
    assert.is_nil(r.headers:get("content-length"))
    assert.equal("gzip", r.headers:get("content-encoding"))
  end)

  it("skips incompressible types, event streams and already-encoded bodies", function()
    local f = fake_factory({})
    assert.equal(BIG, get(app_with(BIG, "image/png"), { deflate = f }).text)
    assert.equal(BIG, get(app_with(BIG, "text/event-stream"), { deflate = f }).text)
    assert.equal(BIG, get(app_with(BIG, "text/plain", { { "content-encoding", "br" } }), { deflate = f }).text)
    assert.equal("gzip", get(app_with(BIG, "application/ld+json"), { deflate = f }).headers:get("content-encoding"))
    assert.equal("gzip", get(app_with(BIG, "image/svg+xml"), { deflate = f }).headers:get("content-encoding"))
  end)

  -- The middleware around a FileResponse of a new temporary file holding BIG; returns it and the path.
  local function file_app()
    local path = fixtures.tmpfile(BIG)
    return gzip.new(function(scope, receive, send)
      lasgi.FileResponse(path, { media_type = "text/plain" })(scope, receive, send)
    end, { deflate = fake_factory({}) }), path
  end

  -- `data` through gzip -dc.
  local function gunzip(data)
    local p = fixtures.tmpfile(data)
    local h = io.popen("gzip -dc < " .. p)
    local out = h:read("a")
    h:close()
    os.remove(p)
    return out
  end

  it("leaves partial content (206) alone", function()
    local app, path = file_app()
    local r = lasgi.TestClient(app):get("/", { headers = { ["accept-encoding"] = "gzip", range = "bytes=0-599" } })
    os.remove(path)
    assert.equal(206, r.status)
    assert.equal(BIG:sub(1, 600), r.text)
    assert.is_nil(r.headers:get("content-encoding"))
  end)

  it("only compresses for clients that accept gzip", function()
    local f = fake_factory({})
    assert.equal(BIG, get(app_with(BIG), { deflate = f }, "identity").text)
    assert.equal(BIG, get(app_with(BIG), { deflate = f }, "gzip;q=0").text)
    assert.is_true(gzip.accepts_gzip("deflate, GZIP;q=0.5"))
    assert.is_true(gzip.accepts_gzip("*"))
    assert.is_false(gzip.accepts_gzip("*, gzip;q=0"))
    assert.is_false(gzip.accepts_gzip(nil))
  end)

  it("lets pathsend through untouched", function()
    local app, path = file_app()
    local r = lasgi.TestClient(app, { extensions = { ["http.response.pathsend"] = {} } })
      :get("/", { headers = { ["accept-encoding"] = "gzip" } })
    os.remove(path)
    assert.equal(BIG, r.text)
    assert.is_nil(r.headers:get("content-encoding"))
  end)

  it("really compresses with the loop's deflate (checked by decompressing)", function()
    -- lasgi uses the loop module already loaded; this spec loads luvrs when it is built (and no luv is loaded).
    if not loop.get() then
      local built = io.open("build/luvrs.so", "rb")
      if built then
        built:close()
        pcall(require, "luvrs")
      end
    end
    local uv = loop.get()
    if not (uv and uv.new_deflate) then return pending("no loop module with new_deflate (a luvrs extension)") end
    local r = get(app_with(BIG))
    assert.equal("gzip", r.headers:get("content-encoding"))
    assert.is_true(#r.body < #BIG)
    assert.equal("\31\139", r.body:sub(1, 2))
    local plain
    if uv.new_inflate then
      plain = uv.new_inflate({ format = "gzip" }):write(r.body)
    else
      plain = gunzip(r.body)
    end
    assert.equal(BIG, plain)
    local s = get(app_with({ BIG, BIG }))
    assert.equal(BIG .. BIG, gunzip(s.body))
  end)
end)
