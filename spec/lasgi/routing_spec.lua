local lasgi = require "lasgi"
local routing = require "lasgi.routing"
local Route, Mount, Router = lasgi.Route, lasgi.Mount, lasgi.Router

local function text(s) return function() return lasgi.PlainTextResponse(s) end end

describe("lasgi.routing", function()
  local users = Router{
    Route("/", text("users"), { name = "list" }),
    Route("/{id:int}", function(req) return lasgi.JSONResponse({ id = req.path_params.id }) end, { name = "get" }),
  }
  local raw_app = setmetatable({}, { __call = function(_, scope, _, send)
    send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
    send({ type = "http.response.body", body = scope.method .. " " .. scope.root_path .. " " .. scope.path })
  end })
  local router = Router{
    Route("/", text("home"), { name = "home" }),
    Route("/items", text("list items"), { methods = { "GET" } }),
    Route("/items", text("created"), { methods = { "POST" } }),
    Route("/only-put", text("put"), { methods = { "PUT", "PATCH" } }),
    Route("/raw", raw_app),
    Route("/rawfn", function(_, _, send)
      send({ type = "http.response.start", status = 201, headers = {} })
      send({ type = "http.response.body", body = "raw function" })
    end, { lasgi = true }),
    Route("/tbl", function() return { a = 1 } end),
    Route("/str", function() return "plain" end),
    Route("/slash/", text("with slash")),
    Mount("/users", users, { name = "users" }),
    Mount("/org/{org}", { Route("/repo/{name}", function(req)
      return req.path_params.org .. "/" .. req.path_params.name
    end, { name = "repo" }) }, { name = "org" }),
    Mount("/mnt", raw_app, { name = "mnt" }),
    lasgi.WebSocketRoute("/ws", function(ws)
      ws:accept()
      ws:send_text("hello")
      ws:close()
    end, { name = "ws" }),
  }
  local client = lasgi.TestClient(router, { follow_redirects = false })

  it("dispatches to the first full match", function()
    assert.equal("home", client:get("/").text)
    assert.equal("list items", client:get("/items").text)
    assert.equal("created", client:post("/items").text)
  end)

  it("answers 405 with Allow when only the method differs, 404 otherwise", function()
    local r = client:delete("/only-put")
    assert.equal(405, r.status)
    assert.equal("PUT, PATCH", r.headers:get("allow"))
    assert.equal("Method Not Allowed", r.text)
    assert.equal(404, client:get("/nothing").status)
    assert.equal("Not Found", client:get("/nothing").text)
    -- a route earlier in the list that only differs by method does not hide a later full match
    assert.equal(200, client:post("/items").status)
    -- Allow lists the methods of every route at that path
    r = client:put("/items")
    assert.equal(405, r.status)
    assert.equal("GET, HEAD, POST", r.headers:get("allow"))
  end)

  it("allows HEAD wherever GET is allowed, without a body", function()
    local r = client:head("/items")
    assert.equal(200, r.status)
    assert.equal("", r.body)
    assert.equal("10", r.headers:get("content-length"))
  end)

  it("routes to plain LASGI apps (callable tables, or functions with lasgi = true) for any method", function()
    assert.equal("DELETE  /raw", client:delete("/raw").text)
    local r = client:get("/rawfn")
    assert.equal(201, r.status)
    assert.equal("raw function", r.text)
  end)

  it("turns a string into text and a plain table into JSON", function()
    local r = client:get("/tbl")
    assert.equal("application/json", r.headers:get("content-type"))
    assert.same({ a = 1 }, r:json())
    assert.equal("text/plain; charset=utf-8", client:get("/str").headers:get("content-type"))
  end)

  it("mounts apps: root_path grows by the prefix, path stays whole", function()
    assert.equal("GET /mnt /mnt/a/b", client:get("/mnt/a/b").text)
    assert.equal("users", client:get("/users/").text)
    assert.same({ id = 7 }, client:get("/users/7"):json())
    assert.equal("acme/lasgi", client:get("/org/acme/repo/lasgi").text)
  end)

  it("redirects when only the trailing slash differs (307), keeping the query", function()
    local r = client:get("/items/?x=1")
    assert.equal(307, r.status)
    assert.equal("http://testserver/items?x=1", r.headers:get("location"))
    r = client:get("/slash")
    assert.equal(307, r.status)
    assert.equal("http://testserver/slash/", r.headers:get("location"))
    assert.equal("http://testserver/users/", client:get("/users").headers:get("location"))
    local followed = lasgi.TestClient(router):get("/slash")
    assert.equal("with slash", followed.text)
    assert.equal(1, #followed.history)
  end)

  it("can turn the trailing-slash redirect off", function()
    local r = lasgi.TestClient(Router{ routes = { Route("/a", text("a")) }, redirect_slashes = false })
    assert.equal(404, r:get("/a/").status)
  end)

  it("builds paths with url_path_for, through mounts", function()
    assert.equal("/", router:url_path_for("home"))
    assert.equal("/users/", router:url_path_for("users:list"))
    assert.equal("/users/42", router:url_path_for("users:get", { id = 42 }))
    assert.equal("/org/a%20b/repo/x", router:url_path_for("org:repo", { org = "a b", name = "x" }))
    assert.equal("/mnt/some/file.txt", router:url_path_for("mnt", { path = "/some/file.txt" }))
    assert.equal("/ws", router:url_path_for("ws"))
    assert.has_error(function() router:url_path_for("users:get") end,
      "url_path_for: no route named 'users:get' with these parameters")
    assert.has_error(function() router:url_path_for("users:get", { id = 1, extra = 2 }) end)
    assert.has_error(function() router:url_path_for("users:get", { id = "x" }) end)
  end)

  it("gives requests an absolute url_for", function()
    local r = Router{ Route("/a/{x}", function(req) return tostring(req:url_for("b", { y = req.path_params.x })) end),
                      Route("/b/{y}", text(""), { name = "b" }) }
    assert.equal("http://testserver/b/q", lasgi.TestClient(r):get("/a/q").text)
  end)

  it("routes WebSockets and closes unmatched ones", function()
    local ws = client:websocket_connect("/ws")
    assert.equal("hello", ws:receive_text())
    local ok, err = pcall(client.websocket_connect, client, "/nope")
    assert.is_false(ok)
    assert.equal(1000, err.code)
  end)

  it("computes the path below root_path", function()
    assert.equal("/b", routing.route_path({ path = "/a/b", root_path = "/a" }))
    assert.equal("", routing.route_path({ path = "/a", root_path = "/a" }))
    assert.equal("/ab", routing.route_path({ path = "/ab", root_path = "/a" }))
  end)

  it("raises on wrong arguments, naming the function", function()
    assert.has_error(function() Route("x", text("")) end, "Route: argument 'path' must start with '/'")
    assert.has_error(function() Route("/x", 1) end, "Route: argument 'endpoint' must be callable")
    assert.has_error(function() Router{ 1 } end)
    assert.has_error(function() Mount("/m", 1) end, "Mount: argument 'app' must be a LASGI app or a list of routes")
  end)

  it("raises when an endpoint returns no response", function()
    local c = lasgi.TestClient(Router{ Route("/", function() end) })
    assert.has_error(function() c:get("/") end, "Route: the endpoint returned nil, not a response")
  end)

  it("renders HTTPException from endpoints even without an App", function()
    local c = lasgi.TestClient(Router{
      Route("/gone", function() error(lasgi.HTTPException(410, "gone for good")) end),
      Route("/big", function(req) return req:body({ max_size = 2 }) end, { methods = { "POST" } }),
    })
    local r = c:get("/gone")
    assert.equal(410, r.status)
    assert.equal("gone for good", r.text)
    assert.equal(413, c:post("/big", { content = "xyz" }).status)
  end)

  it("adds routes after creation", function()
    local r = Router{}
    r:add_route("/x", text("x")):mount("/m", raw_app)
    local c = lasgi.TestClient(r)
    assert.equal("x", c:get("/x").text)
    assert.equal("GET /m /m/y", c:get("/m/y").text)
  end)
end)
