local lasgi = require "lasgi"

describe("lasgi.applications", function()
  local function make(opts)
    opts = opts or {}
    opts.routes = opts.routes or {
      lasgi.Route("/", function(req) return lasgi.PlainTextResponse("count=" .. req.app.state.count) end),
      lasgi.Route("/boom", function() error("boom") end),
      lasgi.Route("/teapot", function() error(lasgi.HTTPException(418)) end),
      lasgi.Route("/big", function(req) return tostring(#req:body()) end, { methods = { "POST" } }),
    }
    opts.state = { count = 1 }
    return lasgi.App(opts)
  end

  it("serves routes and shares app.state", function()
    local app = make()
    local c = lasgi.TestClient(app)
    assert.equal("count=1", c:get("/").text)
    app.state.count = 2
    assert.equal("count=2", c:get("/").text)
  end)

  it("renders HTTPException and custom 404 handlers", function()
    local c = lasgi.TestClient(make({ exception_handlers = {
      [404] = function(req) return lasgi.HTMLResponse("<h1>no " .. req.url.path .. "</h1>", 404) end,
    } }))
    local r = c:get("/missing")
    assert.equal(404, r.status)
    assert.equal("<h1>no /missing</h1>", r.text)
    assert.equal(418, c:get("/teapot").status)
    assert.equal(405, c:post("/").status)
    assert.equal("GET, HEAD", c:post("/").headers:get("allow"))
  end)

  it("answers 500 for errors, with a debug page or a custom handler", function()
    local r = lasgi.TestClient(make(), { raise_server_exceptions = false }):get("/boom")
    assert.equal(500, r.status)
    assert.equal("Internal Server Error", r.text)
    r = lasgi.TestClient(make({ debug = true }), { raise_server_exceptions = false }):get("/boom")
    assert.matches("stack traceback", r.text, 1, true)
    local oops = function() return lasgi.PlainTextResponse("oops", 500) end
    r = lasgi.TestClient(make({ exception_handlers = { [500] = oops } }), { raise_server_exceptions = false })
      :get("/boom")
    assert.equal("oops", r.text)
  end)

  it("applies max_body_size app-wide", function()
    local c = lasgi.TestClient(make({ max_body_size = 4 }))
    assert.equal("4", c:post("/big", { content = "1234" }).text)
    assert.equal(413, c:post("/big", { content = "12345" }).status)
  end)

  it("stacks middleware, outermost first", function()
    local order = {}
    local function tag(name)
      return function(app)
        return function(scope, receive, send)
          order[#order + 1] = name
          return app(scope, receive, send)
        end
      end
    end
    local inner = function(a, opts) return tag(opts.name)(a) end
    local app = make({ middleware = { tag("outer"), { inner, { name = "inner" } } } })
    lasgi.TestClient(app):get("/")
    assert.same({ "outer", "inner" }, order)
  end)

  it("runs lifespan hooks and exposes url_path_for", function()
    local up = false
    local app = lasgi.App{ routes = { lasgi.Route("/n/{id:int}", function() return "" end, { name = "note" }) },
                           on_startup = { function() up = true end } }
    lasgi.TestClient(app):run(function() assert.is_true(up) end)
    assert.equal("/n/5", app:url_path_for("note", { id = 5 }))
  end)

  it("adds routes with method shortcuts", function()
    local app = lasgi.App()
    app:get("/a", function() return "get" end):post("/a", function() return "post" end)
    app:websocket_route("/ws", function(ws) ws:accept(); ws:send_text("w"); ws:close() end)
    local c = lasgi.TestClient(app)
    assert.equal("get", c:get("/a").text)
    assert.equal("post", c:post("/a").text)
    assert.equal(405, c:put("/a").status)
    assert.equal("w", c:websocket_connect("/ws"):receive_text())
  end)

  it("composes with the bundled middleware", function()
    local app = lasgi.App{
      routes = { lasgi.Route("/", function() return "hi" end) },
      middleware = { { lasgi.middleware.TrustedHost, { allowed_hosts = { "testserver" } } },
                     { lasgi.middleware.CORS, { allow_origins = { "*" } } } },
    }
    local r = lasgi.TestClient(app):get("/", { headers = { origin = "https://x.org" } })
    assert.equal("*", r.headers:get("access-control-allow-origin"))
    assert.equal(400, lasgi.TestClient(app, { base_url = "http://other" }):get("/").status)
  end)

  it("checks its options", function()
    assert.has_error(function() lasgi.App{ middleware = { 1 } } end,
      "App: middleware[1] must be a function(app) or { middleware, opts }")
  end)
end)
