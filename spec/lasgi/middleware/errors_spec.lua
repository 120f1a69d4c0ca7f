local lasgi = require "lasgi"
local errors = require "lasgi.middleware.errors"

local function failing(scope)
  if scope.path == "/late" then
    return function(_, _, send)
      send({ type = "http.response.start", status = 200, headers = {} })
      error("after start")
    end
  end
  return function() error("broken <thing>") end
end

local function app(scope, receive, send) return failing(scope)(scope, receive, send) end

describe("lasgi.middleware.errors", function()
  it("answers a plain 500 and raises the error again", function()
    local c = lasgi.TestClient(errors.new(app), { raise_server_exceptions = false })
    local r = c:get("/")
    assert.equal(500, r.status)
    assert.equal("Internal Server Error", r.text)
    assert.matches("broken <thing>", r.error)
    assert.has_error(function() lasgi.TestClient(errors.new(app)):get("/") end)
  end)

  it("shows an escaped traceback page in debug mode", function()
    local c = lasgi.TestClient(errors.new(app, { debug = true }), { raise_server_exceptions = false })
    local r = c:get("/", { headers = { accept = "text/html" } })
    assert.equal(500, r.status)
    assert.equal("text/html; charset=utf-8", r.headers:get("content-type"))
    assert.matches("broken &lt;thing&gt;", r.text, 1, true)
    assert.matches("stack traceback", r.text, 1, true)
    assert.is_nil(r.text:find("<thing>", 1, true))
    r = c:get("/", { headers = { accept = "*/*" } })
    assert.equal("text/plain; charset=utf-8", r.headers:get("content-type"))
    assert.matches("stack traceback", r.text, 1, true)
  end)

  it("uses a custom handler and can keep the error to itself", function()
    local c = lasgi.TestClient(errors.new(app, {
      reraise = false,
      handler = function(req, err)
        return lasgi.JSONResponse({ path = req.url.path, err = tostring(err):match("broken") }, 500)
      end,
    }))
    assert.same({ path = "/x", err = "broken" }, c:get("/x"):json())
  end)

  it("cannot answer once the response has started: the error propagates", function()
    local c = lasgi.TestClient(errors.new(app), { raise_server_exceptions = false })
    local r = c:get("/late")
    assert.equal(200, r.status)
    assert.matches("after start", r.error)
  end)

  it("escapes HTML", function()
    assert.equal("&lt;a href=&quot;x&quot;&gt;&amp;&#39;", errors.escape_html([[<a href="x">&']]))
  end)
end)
