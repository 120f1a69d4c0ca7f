local lasgi = require "lasgi"
local testclient = require "lasgi.testclient"
local exceptions = require "lasgi.exceptions"

describe("lasgi.testclient", function()
  local function cookie_app()
    return lasgi.Router{
      lasgi.Route("/set", function(req)
        local r = lasgi.PlainTextResponse("set")
        r:set_cookie("session", req.query_params:get("v") or "abc")
        return r
      end),
      lasgi.Route("/show", function(req) return lasgi.JSONResponse(req.cookies) end),
      lasgi.Route("/clear", function() return lasgi.PlainTextResponse("cleared"):delete_cookie("session") end),
      lasgi.Route("/go", function() return lasgi.RedirectResponse("/show", 303) end, { methods = { "POST" } }),
      lasgi.Route("/keep", function() return lasgi.RedirectResponse("/echo", 307) end, { methods = { "POST" } }),
      lasgi.Route("/echo", function(req) return req.method .. ":" .. req:body() end, { methods = { "POST", "GET" } }),
    }
  end

  it("keeps cookies across requests and forgets deleted ones", function()
    local c = lasgi.TestClient(cookie_app())
    c:get("/set")
    assert.same({ session = "abc" }, c:get("/show"):json())
    assert.same({ session = "abc", extra = "1" }, c:get("/show", { cookies = { extra = "1" } }):json())
    c:get("/clear")
    assert.same({}, c:get("/show"):json())
  end)

  it("follows redirects: 303 turns POST into GET, 307 keeps method and body", function()
    local c = lasgi.TestClient(cookie_app())
    local r = c:post("/go", { content = "x" })
    assert.equal(200, r.status)
    assert.equal(303, r.history[1].status)
    r = c:post("/keep", { content = "body" })
    assert.equal("POST:body", r.text)
    assert.equal(307, c:post("/keep", { follow_redirects = false }).status)
  end)

  it("raises app errors by default, or gives a 500 when told not to", function()
    local app = function() error("boom") end
    assert.has_error(function() lasgi.TestClient(app):get("/") end)
    local r = lasgi.TestClient(app, { raise_server_exceptions = false }):get("/")
    assert.equal(500, r.status)
    assert.matches("boom", r.error)
    assert.matches("traceback", r.traceback)
  end)

  it("checks the events an app sends, like a server would", function()
    local function bad(fn) return lasgi.TestClient(function(_, _, send) fn(send) end) end
    assert.has_error(function() bad(function(send) send({ type = "http.response.body", body = "x" }) end):get("/") end)
    assert.has_error(function()
      bad(function(send)
        send({ type = "http.response.start", status = 200, headers = { { "bad name", "x" } } })
      end):get("/")
    end)
    assert.has_error(function()
      bad(function(send)
        send({ type = "http.response.start", status = 200 })
        send({ type = "http.response.body", body = "" })
        send({ type = "http.response.body", body = "again" })
      end):get("/")
    end)
    assert.has_error(function() bad(function() end):get("/") end,
      "TestClient: the app returned without starting a response")
  end)

  it("collects trailers when the extension is offered, and refuses them otherwise", function()
    local function app(_, _, send)
      send({ type = "http.response.start", status = 200, headers = {}, trailers = true })
      send({ type = "http.response.body", body = "data" })
      send({ type = "http.response.trailers", headers = { { "x-checksum", "abc" } }, more_trailers = false })
    end
    local r = lasgi.TestClient(app, { extensions = { ["http.response.trailers"] = {} } }):get("/")
    assert.equal("data", r.text)
    assert.equal("abc", r.trailers:get("x-checksum"))
    assert.has_error(function() lasgi.TestClient(app):get("/") end)
  end)

  it("builds scopes like a server", function()
    local seen
    local c = lasgi.TestClient(function(scope, receive, send)
      seen = scope
      lasgi.PlainTextResponse("")(scope, receive, send)
    end, { base_url = "https://example.org:8443", root_path = "/api" })
    c:get("/api/x%20y?q=1", { headers = { ["X-Custom"] = "v" } })
    assert.equal("http", seen.type)
    assert.same({ version = "1.0", spec_version = "1.0" }, seen.lasgi)
    assert.equal("https", seen.scheme)
    assert.equal("/api/x y", seen.path)
    assert.equal("/api/x%20y", seen.raw_path)
    assert.equal("q=1", seen.query_string)
    assert.equal("/api", seen.root_path)
    assert.same({ "example.org", 8443 }, seen.server)
    local names = {}
    for _, h in ipairs(seen.headers) do names[#names + 1] = h[1] end
    assert.same({ "host", "user-agent", "accept", "x-custom" }, names)
    assert.equal("example.org:8443", seen.headers[1][2])
  end)

  describe("websocket_connect", function()
    local app = lasgi.Router{
      lasgi.WebSocketRoute("/echo", function(ws)
        ws:accept("chat", { { "x-ws", "1" } })
        for text, bytes in ws:messages() do
          if text then ws:send_text("echo:" .. text) else ws:send_bytes(bytes) end
        end
      end),
      lasgi.WebSocketRoute("/reject", function(ws) ws:close(4001, "no") end),
      lasgi.WebSocketRoute("/deny", function(ws) ws:deny(lasgi.PlainTextResponse("go away", 401)) end),
    }

    it("exchanges messages and closes", function()
      local ws = lasgi.TestClient(app):websocket_connect("/echo", { subprotocols = { "chat" } })
      assert.equal("chat", ws.accepted_subprotocol)
      ws:send_text("hi")
      assert.equal("echo:hi", ws:receive_text())
      ws:send_bytes("\0\1")
      assert.equal("\0\1", ws:receive_bytes())
      ws:send_json({ a = 1 })
      assert.equal('echo:{"a":1}', ws:receive_text())
      ws:close()
      assert.is_true(ws.runner.done)
      assert.is_nil(ws.runner.err)
    end)

    it("reports that nothing can be received when the app waits for a message", function()
      local ws = lasgi.TestClient(app):websocket_connect("/echo")
      assert.has_error(function() ws:receive() end,
        "TestWebSocket:receive: the app is waiting for a message: nothing to receive")
      ws:close()
    end)

    it("raises WebSocketDisconnect when the app closes before accepting", function()
      local ok, err = pcall(lasgi.TestClient(app).websocket_connect, lasgi.TestClient(app), "/reject")
      assert.is_false(ok)
      assert.is_true(exceptions.is(err, exceptions.WebSocketDisconnect))
      assert.equal(4001, err.code)
      assert.equal("no", err.reason)
    end)

    it("raises WebSocketDenied for an HTTP denial response", function()
      local c = lasgi.TestClient(app, { extensions = { ["websocket.http.response"] = {} } })
      local ok, err = pcall(c.websocket_connect, c, "/deny")
      assert.is_false(ok)
      assert.equal(testclient.WebSocketDenied, getmetatable(err))
      assert.equal(401, err.status)
      assert.equal("go away", err.body)
    end)
  end)

  describe("lifespan", function()
    it("runs startup before requests and shutdown at the end; state reaches requests", function()
      local log = {}
      local app = lasgi.Router{
        routes = { lasgi.Route("/", function(req) return req.state.db end) },
        on_startup = { function(state) log[#log + 1] = "up"; state.db = "connected" end },
        on_shutdown = { function() log[#log + 1] = "down" end },
      }
      lasgi.TestClient(app):run(function(c)
        assert.same({ "up" }, log)
        assert.equal("connected", c:get("/").text)
      end)
      assert.same({ "up", "down" }, log)
    end)

    it("works as a to-be-closed variable", function()
      local down = false
      local app = lasgi.Router{ routes = {}, on_shutdown = { function() down = true end } }
      do
        local c <close> = lasgi.TestClient(app):enter()
        assert.is_false(down)
        assert.is_table(c)
      end
      assert.is_true(down)
    end)

    it("raises when startup fails", function()
      local app = lasgi.Router{ routes = {}, on_startup = { function() error("no database") end } }
      assert.has_error(function() lasgi.TestClient(app):startup() end)
    end)

    it("accepts apps that do not support lifespan", function()
      local c = lasgi.TestClient(function(scope, receive, send)
        if scope.type ~= "http" then error("unsupported") end
        lasgi.PlainTextResponse("ok")(scope, receive, send)
      end)
      c:run(function() assert.equal("ok", c:get("/").text) end)
    end)
  end)

  describe("with luvrs.co", function()
    local H, co
    setup(function()
      H = require "helper"
      co = require "luvrs.co"
      co.set_loop(H.uv)
    end)
    after_each(function() H.after_each() end)

    it("drives the loop while an HTTP app sleeps", function()
      local app = function(scope, receive, send)
        co.sleep(20)
        local t0 = H.uv.now()
        co.sleep(10)
        lasgi.PlainTextResponse("slept " .. tostring(H.uv.now() - t0 >= 9))(scope, receive, send)
      end
      assert.equal("slept true", lasgi.TestClient(app):get("/").text)
    end)

    it("drives the loop while a WebSocket app pushes live updates", function()
      local app = lasgi.Router{ lasgi.WebSocketRoute("/live", function(ws)
        ws:accept()
        for i = 1, 3 do
          co.sleep(5)
          ws:send_json({ tick = i })
        end
        ws:close()
      end) }
      local ws = lasgi.TestClient(app):websocket_connect("/live")
      assert.same({ tick = 1 }, ws:receive_json())
      assert.same({ tick = 2 }, ws:receive_json())
      assert.same({ tick = 3 }, ws:receive_json())
      assert.has_error(function() ws:receive_text() end)
    end)

    it("reports an app suspended with nothing on the loop to resume it", function()
      local app = function() coroutine.yield() end
      assert.has_error(function() lasgi.TestClient(app):get("/") end,
        "testclient: the app is suspended but the loop has nothing left to resume it")
    end)
  end)
end)
