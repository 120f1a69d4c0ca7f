local exceptions = require "lasgi.exceptions"

describe("lasgi.exceptions", function()
  it("builds HTTP errors with the status phrase as default detail", function()
    local e = exceptions.http(404)
    assert.equal(404, e.status)
    assert.equal("Not Found", e.detail)
    assert.equal("HTTPException(418): I'm a teapot", tostring(exceptions.http(418, "I'm a teapot")))
    assert.equal(e.status, exceptions.HTTPException(404).status)
  end)

  it("builds WebSocket errors and disconnects", function()
    local e = exceptions.websocket(4000)
    assert.equal(4000, e.code)
    assert.equal("", e.reason)
    local d = exceptions.disconnect()
    assert.equal(1000, d.code)
    assert.equal("WebSocketDisconnect(1000)", tostring(d))
  end)

  it("tells error classes apart", function()
    assert.is_true(exceptions.is(exceptions.http(400), exceptions.HTTPException))
    assert.is_false(exceptions.is(exceptions.http(400), exceptions.WebSocketException))
    assert.is_true(exceptions.is(exceptions.client_disconnect(), exceptions.ClientDisconnect))
    assert.is_false(exceptions.is("x", exceptions.HTTPException))
  end)

  it("checks its arguments", function()
    assert.has_error(function() exceptions.http(200) end,
      "HTTPException: argument 'status' must be an integer 400..599")
    assert.has_error(function() exceptions.websocket("x") end, "WebSocketException: argument 'code' must be an integer")
  end)
end)
