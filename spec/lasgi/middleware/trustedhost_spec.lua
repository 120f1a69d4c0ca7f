local lasgi = require "lasgi"
local trustedhost = require "lasgi.middleware.trustedhost"

local function app(scope, receive, send) lasgi.PlainTextResponse("ok")(scope, receive, send) end

describe("lasgi.middleware.trustedhost", function()
  local c = lasgi.TestClient(trustedhost.new(app, { allowed_hosts = { "example.com", "*.example.org" } }),
    { follow_redirects = false })

  it("lets allowed hosts through, ports ignored", function()
    assert.equal("ok", c:get("http://example.com/").text)
    assert.equal("ok", c:get("http://example.com:8000/").text)
    assert.equal("ok", c:get("http://api.example.org/").text)
    assert.equal("ok", c:get("http://a.b.example.org/").text)
  end)

  it("compares hosts without regard to case, in the request and in the allowed list", function()
    local mixed = lasgi.TestClient(trustedhost.new(app, { allowed_hosts = { "*.Example.com", "API.test" } }))
    assert.equal("ok", mixed:get("http://a.example.com/").text)
    assert.equal("ok", mixed:get("http://A.EXAMPLE.COM/").text)
    assert.equal("ok", mixed:get("http://api.test/").text)
    assert.equal(400, mixed:get("http://example.com/").status)
  end)

  it("answers 400 for other hosts", function()
    local r = c:get("http://evil.com/")
    assert.equal(400, r.status)
    assert.equal("Invalid host header", r.text)
    assert.equal(400, c:get("http://example.org/").status) -- "*.example.org" does not cover the bare domain
    assert.equal(400, c:get("http://notexample.com/").status)
  end)

  it("redirects to www when only www is allowed", function()
    local w = lasgi.TestClient(trustedhost.new(app, { allowed_hosts = { "www.example.com" } }),
      { follow_redirects = false })
    local r = w:get("http://example.com/p?q=1")
    assert.equal(307, r.status)
    assert.equal("http://www.example.com/p?q=1", r.headers:get("location"))
    local off = lasgi.TestClient(trustedhost.new(app, { allowed_hosts = { "www.example.com" }, www_redirect = false }))
    assert.equal(400, off:get("http://example.com/").status)
  end)

  it("closes WebSockets from other hosts", function()
    local wc = lasgi.TestClient(trustedhost.new(app, { allowed_hosts = { "example.com" } }))
    local ok, err = pcall(wc.websocket_connect, wc, "ws://evil.com/ws")
    assert.is_false(ok)
    assert.equal(1008, err.code)
  end)

  it("checks its options", function()
    assert.has_error(function() trustedhost.new(app, { allowed_hosts = { "ex*mple.com" } }) end,
      "TrustedHostMiddleware: wildcard only allowed as a '*.' prefix: ex*mple.com")
    assert.has_error(function() trustedhost.new(app, { allowed_hosts = "x" }) end,
      "TrustedHostMiddleware: argument 'allowed_hosts' must be a list")
  end)
end)
