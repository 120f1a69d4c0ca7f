local lasgi = require "lasgi"
local cors = require "lasgi.middleware.cors"

local function client(opts)
  local app = function(scope, receive, send)
    lasgi.PlainTextResponse("ok", 200, { vary = "Accept" })(scope, receive, send)
  end
  return lasgi.TestClient(cors.new(app, opts))
end

describe("lasgi.middleware.cors", function()
  it("answers an allowed preflight", function()
    local c = client({ allow_origins = { "https://a.org" }, allow_methods = { "GET", "POST" },
                       allow_headers = { "X-Token" }, max_age = 99 })
    local r = c:options("/", { headers = { origin = "https://a.org", ["access-control-request-method"] = "POST",
                                           ["access-control-request-headers"] = "x-token, content-type" } })
    assert.equal(200, r.status)
    assert.equal("https://a.org", r.headers:get("access-control-allow-origin"))
    assert.equal("GET, POST", r.headers:get("access-control-allow-methods"))
    assert.equal("99", r.headers:get("access-control-max-age"))
    assert.equal("accept, accept-language, content-language, content-type, x-token",
      r.headers:get("access-control-allow-headers"))
    assert.equal("Origin", r.headers:get("vary"))
  end)

  it("refuses a preflight naming what is disallowed", function()
    local c = client({ allow_origins = { "https://a.org" }, allow_methods = { "GET" } })
    local r = c:options("/", { headers = { origin = "https://evil.org", ["access-control-request-method"] = "PUT",
                                           ["access-control-request-headers"] = "x-secret" } })
    assert.equal(400, r.status)
    assert.equal("Disallowed CORS origin, method, headers", r.text)
  end)

  it("allows any origin with *, echoing requested headers when headers are *", function()
    local c = client({ allow_origins = { "*" }, allow_methods = { "*" }, allow_headers = { "*" } })
    local r = c:options("/", { headers = { origin = "https://x.org", ["access-control-request-method"] = "DELETE",
                                           ["access-control-request-headers"] = "x-anything" } })
    assert.equal(200, r.status)
    assert.equal("*", r.headers:get("access-control-allow-origin"))
    assert.equal("x-anything", r.headers:get("access-control-allow-headers"))
    local s = c:get("/", { headers = { origin = "https://x.org" } })
    assert.equal("*", s.headers:get("access-control-allow-origin"))
  end)

  it("adds headers to simple requests from allowed origins only", function()
    local c = client({ allow_origins = { "https://a.org" }, expose_headers = { "X-Count" },
                       allow_credentials = true })
    local r = c:get("/", { headers = { origin = "https://a.org" } })
    assert.equal("ok", r.text)
    assert.equal("https://a.org", r.headers:get("access-control-allow-origin"))
    assert.equal("true", r.headers:get("access-control-allow-credentials"))
    assert.equal("X-Count", r.headers:get("access-control-expose-headers"))
    assert.equal("Accept, Origin", r.headers:get("vary"))
    r = c:get("/", { headers = { origin = "https://b.org" } })
    assert.is_nil(r.headers:get("access-control-allow-origin"))
  end)

  it("echoes the origin for credentialed requests when all origins are allowed", function()
    local c = client({ allow_origins = { "*" } })
    local r = c:get("/", { headers = { origin = "https://x.org", cookie = "a=1" } })
    assert.equal("https://x.org", r.headers:get("access-control-allow-origin"))
  end)

  it("matches origins with a pattern", function()
    local c = client({ allow_origin_regex = "https://[%w-]+%.example%.org" })
    assert.equal("https://app.example.org",
      c:get("/", { headers = { origin = "https://app.example.org" } }).headers:get("access-control-allow-origin"))
    assert.is_nil(c:get("/", { headers = { origin = "https://example.org.evil" } })
      .headers:get("access-control-allow-origin"))
  end)

  it("leaves requests without Origin alone", function()
    local r = client({ allow_origins = { "*" } }):get("/")
    assert.is_nil(r.headers:get("access-control-allow-origin"))
    assert.equal(405, lasgi.TestClient(cors.new(lasgi.Router{ lasgi.Route("/", function() return "x" end) },
      { allow_origins = { "*" } })):options("/", { headers = { origin = "https://x.org" } }).status)
  end)
end)
