local lasgi = require "lasgi"

describe("lasgi", function()
  it("re-exports the public API", function()
    for _, name in ipairs({ "App", "Router", "Route", "WebSocketRoute", "Mount", "Request", "WebSocket", "Response",
      "PlainTextResponse", "HTMLResponse", "JSONResponse", "RedirectResponse", "StreamingResponse", "FileResponse",
      "HTTPException", "WebSocketException", "StaticFiles", "Headers", "QueryParams", "URL", "TestClient" }) do
      assert.is_function(lasgi[name], name)
    end
    for _, name in ipairs({ "CORS", "GZip", "TrustedHost", "HTTPSRedirect", "ServerErrors", "Exceptions" }) do
      assert.is_table(lasgi.middleware[name], name)
    end
    assert.is_table(lasgi.json)
    assert.is_table(lasgi.lifespan)
  end)

  it("runs the hello-world app", function()
    local app = function(scope, _, send)
      assert.equal("http", scope.type)
      send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
      send({ type = "http.response.body", body = "Hello, world!" })
    end
    assert.equal("Hello, world!", lasgi.TestClient(app):get("/").text)
  end)
end)
