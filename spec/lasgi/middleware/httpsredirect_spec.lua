local lasgi = require "lasgi"
local httpsredirect = require "lasgi.middleware.httpsredirect"

local function app(scope, receive, send) lasgi.PlainTextResponse("secure")(scope, receive, send) end

describe("lasgi.middleware.httpsredirect", function()
  local c = lasgi.TestClient(httpsredirect.new(app), { follow_redirects = false })

  it("redirects http to https with 307, dropping the default port", function()
    local r = c:get("http://example.com/a?b=1")
    assert.equal(307, r.status)
    assert.equal("https://example.com/a?b=1", r.headers:get("location"))
    assert.equal("https://example.com:8000/", c:get("http://example.com:8000/").headers:get("location"))
  end)

  it("lets https through", function()
    assert.equal("secure", c:get("https://example.com/").text)
  end)

  it("follows to the https URL", function()
    local r = lasgi.TestClient(httpsredirect.new(app)):get("http://example.com/")
    assert.equal("secure", r.text)
    assert.equal("https", r.url.scheme)
  end)

  it("closes ws:// connections, or redirects them with websocket.http.response", function()
    local ok, err = pcall(c.websocket_connect, c, "ws://example.com/ws")
    assert.is_false(ok)
    assert.equal(1008, err.code)
    local e = lasgi.TestClient(httpsredirect.new(app), { extensions = { ["websocket.http.response"] = {} } })
    ok, err = pcall(e.websocket_connect, e, "ws://example.com/ws")
    assert.is_false(ok)
    assert.equal(307, err.status)
    assert.equal("wss://example.com/ws", err.headers:get("location"))
  end)
end)
