local lasgi = require "lasgi"
local request_mod = require "lasgi.request"
local exceptions = require "lasgi.exceptions"

-- An app that answers with whatever `fn(request)` returns, as JSON.
local function echo(fn, opts)
  local app = lasgi.App{ routes = {
    lasgi.Route("/{rest:path}", function(req) return lasgi.JSONResponse(fn(req)) end,
      { methods = { "GET", "POST", "PUT" } }),
  }, max_body_size = opts and opts.max_body_size }
  return lasgi.TestClient(app)
end

describe("lasgi.request", function()
  it("exposes method, url parts, path params and client", function()
    local c = echo(function(req)
      return { method = req.method, url = tostring(req.url), path = req.url.path, query = req.url.query,
               host = req.url.hostname, rest = req.path_params.rest, client = req.client.host,
               base = tostring(req.base_url) }
    end)
    local v = c:get("/a/b?x=1&y=2"):json()
    assert.same({ method = "GET", url = "http://testserver/a/b?x=1&y=2", path = "/a/b", query = "x=1&y=2",
                  host = "testserver", rest = "a/b", client = "testclient", base = "http://testserver/" }, v)
  end)

  it("gives multi-valued query parameters", function()
    local c = echo(function(req)
      return { all = req.query_params:get_all("t"), one = req.query_params:get("t"), sp = req.query_params:get("s") }
    end)
    assert.same({ all = { "a", "b" }, one = "a", sp = "x y" }, c:get("/?t=a&t=b&s=x+y"):json())
    assert.same({ all = { "1", "2" }, one = "1", sp = "z" }, c:get("/", { params = { t = { 1, 2 }, s = "z" } }):json())
  end)

  it("gives case-insensitive, multi-valued headers", function()
    local c = echo(function(req)
      return { one = req.headers:get("X-Thing"), all = req.headers:get_all("x-thing") }
    end)
    local v = c:get("/", { headers = { { "X-Thing", "1" }, { "x-thing", "2" } } }):json()
    assert.same({ one = "1", all = { "1", "2" } }, v)
  end)

  it("parses cookies", function()
    local c = echo(function(req) return req.cookies end)
    assert.same({ a = "1", b = "2" }, c:get("/", { headers = { cookie = "a=1; b=2" } }):json())
  end)

  it("reads body, text and json (body read once, then cached)", function()
    local c = echo(function(req)
      local b1, b2 = req:body(), req:body()
      return { same = b1 == b2, text = req:text(), json = req:json() }
    end)
    assert.same({ same = true, text = '{"k":[1,2]}', json = { k = { 1, 2 } } },
      c:post("/", { content = '{"k":[1,2]}', chunk_size = 3 }):json())
  end)

  it("answers 400 for invalid JSON", function()
    local c = echo(function(req) return req:json() end)
    local r = c:post("/", { content = "{nope" })
    assert.equal(400, r.status)
    assert.matches("^Invalid JSON body", r.text)
  end)

  it("answers 413 past max_body_size, from Content-Length or while streaming", function()
    local c = echo(function(req) return { n = #req:body() } end, { max_body_size = 10 })
    assert.same({ n = 10 }, c:post("/", { content = ("x"):rep(10) }):json())
    local r = c:post("/", { content = ("x"):rep(11) })
    assert.equal(413, r.status)
    assert.equal("Request body exceeds 10 bytes", r.text)
    -- no Content-Length: the limit is enforced as chunks arrive
    local scope_app = function(scope, receive, send)
      local req = request_mod.new(scope, receive, send)
      assert.is_nil(req.headers:get("content-length"))
      local ok, err = pcall(req.body, req, { max_size = 5 })
      assert.is_false(ok)
      assert.is_true(exceptions.is(err, exceptions.HTTPException))
      lasgi.PlainTextResponse(tostring(err.status))(scope, receive, send)
    end
    local raw = lasgi.TestClient(scope_app)
    local r2 = raw:post("/", { content = "abcdefgh", chunk_size = 2, headers = { ["content-length"] = false } })
    assert.equal("413", r2.text)
  end)

  it("streams the body chunk by chunk", function()
    local c = echo(function(req)
      local chunks = {}
      for chunk in req:stream() do chunks[#chunks + 1] = chunk end
      return chunks
    end)
    assert.same({ "ab", "cd", "e" }, c:post("/", { content = "abcde", chunk_size = 2 }):json())
  end)

  it("raises ClientDisconnect when the client leaves mid-body", function()
    local seen
    local function app(scope, receive, send)
      local events = { { type = "http.request", body = "a", more_body = true }, { type = "http.disconnect" } }
      local i = 0
      local req = request_mod.new(scope, function() i = i + 1; return events[i] end, send)
      local ok, err = pcall(req.body, req)
      seen = not ok and exceptions.is(err, exceptions.ClientDisconnect) and req.disconnected
      lasgi.PlainTextResponse("x")(scope, receive, send)
    end
    lasgi.TestClient(app):get("/")
    assert.is_true(seen)
  end)

  it("keeps request.state in the scope, shared along the middleware chain", function()
    local function mw(app)
      return function(scope, receive, send)
        request_mod.new(scope).state.user = "ann"
        return app(scope, receive, send)
      end
    end
    local app = lasgi.App{ routes = { lasgi.Route("/", function(req) return req.state.user end) }, middleware = { mw } }
    assert.equal("ann", lasgi.TestClient(app):get("/").text)
  end)

  it("refuses a non-http scope", function()
    assert.has_error(function() request_mod.new({ type = "websocket" }) end,
      "Request: argument 'scope' must be an http scope")
  end)
end)
