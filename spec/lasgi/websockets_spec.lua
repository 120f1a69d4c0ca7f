local lasgi = require "lasgi"
local websockets = require "lasgi.websockets"
local exceptions = require "lasgi.exceptions"

local function client_for(endpoint, opts)
  return lasgi.TestClient(lasgi.Router{ lasgi.WebSocketRoute("/ws/{room}", endpoint) }, opts)
end

describe("lasgi.websockets", function()
  it("accepts with a subprotocol and headers, and exposes the connection", function()
    local info
    local c = client_for(function(ws)
      info = { room = ws.path_params.room, q = ws.query_params:get("q"), proto = ws.scope.subprotocols[1],
               url = tostring(ws.url), cookie = ws.cookies.c }
      ws:accept("v2", { { "x-a", "1" } })
      ws:close()
    end)
    local ws = c:websocket_connect("/ws/lobby?q=1", { subprotocols = { "v2" }, headers = { cookie = "c=3" } })
    assert.equal("v2", ws.accepted_subprotocol)
    assert.same({ { "x-a", "1" } }, ws.extra_headers)
    assert.same({ room = "lobby", q = "1", proto = "v2", url = "ws://testserver/ws/lobby?q=1", cookie = "3" }, info)
  end)

  it("receives and sends text, bytes and JSON", function()
    local c = client_for(function(ws)
      ws:accept()
      ws:send_text(ws:receive_text():upper())
      ws:send_bytes(ws:receive_bytes():reverse())
      local v = ws:receive_json()
      v.seen = true
      ws:send_json(v)
      ws:send_json({ mode = "binary" }, "binary")
      ws:close(1001, "bye")
    end)
    local ws = c:websocket_connect("/ws/r")
    ws:send_text("abc")
    assert.equal("ABC", ws:receive_text())
    ws:send_bytes("xyz")
    assert.equal("zyx", ws:receive_bytes())
    ws:send_json({ n = 1 })
    assert.same({ n = 1, seen = true }, ws:receive_json())
    assert.equal('{"mode":"binary"}', ws:receive_bytes())
    local ok, err = pcall(ws.receive_text, ws)
    assert.is_false(ok)
    assert.equal(1001, err.code)
    assert.equal("bye", err.reason)
  end)

  it("iterates over messages until the client disconnects, then ends quietly", function()
    local got = {}
    local c = client_for(function(ws)
      ws:accept()
      for text in ws:iter_text() do got[#got + 1] = text end
      got[#got + 1] = "end:" .. ws.client_state
    end)
    local ws = c:websocket_connect("/ws/r")
    ws:send_text("a")
    ws:send_text("b")
    ws:close(1000)
    assert.same({ "a", "b", "end:disconnected" }, got)
    assert.is_nil(ws.runner.err)
  end)

  it("iter_json and iter_bytes stop on disconnect too", function()
    local got = {}
    local c = client_for(function(ws)
      ws:accept()
      for v in ws:iter_json() do got[#got + 1] = v.n end
    end)
    local ws = c:websocket_connect("/ws/r")
    ws:send_json({ n = 1 })
    ws:send_json({ n = 2 })
    ws:close()
    assert.same({ 1, 2 }, got)
  end)

  it("a disconnect raised inside the endpoint ends it without an error", function()
    local c = client_for(function(ws)
      ws:accept()
      ws:receive_text()
      error("not reached")
    end)
    local ws = c:websocket_connect("/ws/r")
    ws:close(1001)
    assert.is_nil(ws.runner.err)
  end)

  it("closes with 1007 on invalid JSON (WebSocketException)", function()
    local c = client_for(function(ws)
      ws:accept()
      ws:receive_json()
    end)
    local ws = c:websocket_connect("/ws/r")
    ws:send_text("{nope")
    local ev = ws:receive()
    assert.equal("websocket.close", ev.type)
    assert.equal(1007, ev.code)
  end)

  it("closes with 1011 and raises again on other errors", function()
    local c = client_for(function(ws)
      ws:accept()
      error("kaput")
    end)
    local ws = c:websocket_connect("/ws/r")
    local ev = ws:receive()
    assert.equal("websocket.close", ev.type)
    assert.equal(1011, ev.code)
    local ok, err = pcall(ws.receive, ws)
    assert.is_false(ok)
    assert.matches("kaput", tostring(err))
  end)

  it("rejects before accept (close means 403 for the server)", function()
    local c = client_for(function(ws) ws:close(1008) end)
    local ok, err = pcall(c.websocket_connect, c, "/ws/r")
    assert.is_false(ok)
    assert.equal(1008, err.code)
  end)

  it("raises WebSocketDisconnect 1006 when send finds the connection gone", function()
    local scope = { type = "websocket", path = "/", headers = {} }
    local events = { { type = "websocket.connect" } }
    local ws = websockets.new(scope, function() return table.remove(events, 1) end, function(ev)
      if ev.type == "websocket.send" then return nil, "disconnected" end
      return true
    end)
    ws:accept()
    local ok, err = pcall(ws.send_text, ws, "x")
    assert.is_false(ok)
    assert.is_true(exceptions.is(err, exceptions.WebSocketDisconnect))
    assert.equal(1006, err.code)
  end)

  it("refuses misuse with errors naming the function", function()
    assert.has_error(function() websockets.new({ type = "http" }) end,
      "WebSocket: argument 'scope' must be a websocket scope")
    local ws = websockets.new({ type = "websocket" }, function() return { type = "websocket.connect" } end,
      function() return true end)
    assert.has_error(function() ws:send_text(1) end, "WebSocket:send_text: argument 'text' must be a string")
    assert.has_error(function() ws:receive_text() end, "WebSocket:receive_text: the connection is not accepted")
  end)
end)
