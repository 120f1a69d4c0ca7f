local lasgi = require "lasgi"
local exceptions_mw = require "lasgi.middleware.exceptions"

local Teapot = { __name = "Teapot" }

local router = lasgi.Router{
  lasgi.Route("/404", function() error(lasgi.HTTPException(404, "no such note")) end),
  lasgi.Route("/401", function() error(lasgi.HTTPException(401, nil, { ["www-authenticate"] = "Basic" })) end),
  lasgi.Route("/tea", function() error(setmetatable({ kind = "earl grey" }, Teapot)) end),
  lasgi.Route("/plain", function() error("plain failure") end),
  lasgi.WebSocketRoute("/ws", function() error(lasgi.WebSocketException(4003, "forbidden")) end, { lasgi = false }),
  lasgi.WebSocketRoute("/wsraw", function(_, receive, send)
    receive()
    error(lasgi.WebSocketException(4004, "raw"))
    send()
  end, { lasgi = true }),
}

describe("lasgi.middleware.exceptions", function()
  it("turns HTTPException into a response with its detail and headers", function()
    local c = lasgi.TestClient(exceptions_mw.new(router))
    local r = c:get("/404")
    assert.equal(404, r.status)
    assert.equal("no such note", r.text)
    r = c:get("/401")
    assert.equal(401, r.status)
    assert.equal("Unauthorized", r.text)
    assert.equal("Basic", r.headers:get("www-authenticate"))
  end)

  it("uses handlers by status and by error class", function()
    local c = lasgi.TestClient(exceptions_mw.new(router, {
      [404] = function(req, err) return lasgi.JSONResponse({ missing = req.url.path, detail = err.detail }, 404) end,
      [Teapot] = function(_, err) return lasgi.PlainTextResponse(err.kind, 418) end,
    }))
    assert.same({ missing = "/404", detail = "no such note" }, c:get("/404"):json())
    local r = c:get("/tea")
    assert.equal(418, r.status)
    assert.equal("earl grey", r.text)
  end)

  it("lets other errors through", function()
    assert.has_error(function() lasgi.TestClient(exceptions_mw.new(router)):get("/plain") end)
  end)

  it("closes WebSockets with the code of a WebSocketException", function()
    local c = lasgi.TestClient(exceptions_mw.new(router))
    local ok, err = pcall(c.websocket_connect, c, "/ws")
    assert.is_false(ok)
    assert.equal(4003, err.code)
    ok, err = pcall(c.websocket_connect, c, "/wsraw")
    assert.is_false(ok)
    assert.equal(4004, err.code)
    assert.equal("raw", err.reason)
  end)

end)
