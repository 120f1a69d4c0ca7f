local convertors = require "lasgi.convertors"
local routing = require "lasgi.routing"
local lasgi = require "lasgi"

local function match(path, target)
  local c = routing.compile_path(path)
  local caps = table.pack(target:match(c.pattern))
  if caps[1] == nil then return nil end
  local out = {}
  for i, name in ipairs(c.names) do
    local v = c.convs[i].convert(caps[i])
    if v == nil then return nil end
    out[name] = v
  end
  return out
end

describe("lasgi.convertors", function()
  it("str matches one segment", function()
    assert.same({ name = "bob" }, match("/u/{name}", "/u/bob"))
    assert.same({ name = "bob" }, match("/u/{name:str}", "/u/bob"))
    assert.is_nil(match("/u/{name}", "/u/bob/x"))
    assert.is_nil(match("/u/{name}", "/u/"))
    assert.equal("x", convertors.str.to_string("x"))
    assert.has_error(function() convertors.str.to_string("a/b") end)
  end)

  it("int converts to an integer and refuses other text", function()
    local m = match("/n/{id:int}", "/n/42")
    assert.equal(42, m.id)
    assert.equal("integer", math.type(m.id))
    assert.is_nil(match("/n/{id:int}", "/n/4x"))
    assert.is_nil(match("/n/{id:int}", "/n/-1"))
    assert.equal("7", convertors.int.to_string(7))
    assert.has_error(function() convertors.int.to_string(1.5) end)
  end)

  it("float accepts 1 and 1.5 but not 1. or .5", function()
    assert.equal(1.5, match("/f/{x:float}", "/f/1.5").x)
    local v = match("/f/{x:float}", "/f/3").x
    assert.equal("float", math.type(v))
    assert.equal(3.0, v)
    assert.is_nil(match("/f/{x:float}", "/f/1."))
    assert.is_nil(match("/f/{x:float}", "/f/.5"))
    assert.is_nil(match("/f/{x:float}", "/f/1.2.3"))
    assert.equal("2.5", convertors.float.to_string(2.5))
    assert.equal("3", convertors.float.to_string(3.0))
    assert.has_error(function() convertors.float.to_string(-1) end)
  end)

  it("uuid matches the canonical form and lower-cases it", function()
    local id = "0F8FAD5B-D9CB-469F-A165-70867728950E"
    assert.equal(id:lower(), match("/x/{id:uuid}", "/x/" .. id).id)
    assert.is_nil(match("/x/{id:uuid}", "/x/0f8fad5b-d9cb-469f-a165-70867728950"))
    assert.is_nil(match("/x/{id:uuid}", "/x/0f8fad5bd9cb469fa16570867728950e"))
    assert.has_error(function() convertors.uuid.to_string("nope") end)
  end)

  it("path matches the rest, slashes included", function()
    assert.equal("a/b/c.txt", match("/files/{p:path}", "/files/a/b/c.txt").p)
    assert.equal("", match("/files/{p:path}", "/files/").p)
  end)

  it("unknown convertors are refused when the route is built", function()
    assert.has_error(function() routing.compile_path("/{x:nope}") end, nil)
    assert.has_error(function() routing.compile_path("/{x}/{x}") end)
  end)

  it("register adds a convertor usable in routes and url_path_for", function()
    convertors.register("slug", {
      pattern = "[%l%d%-]+",
      convert = function(s) return s end,
      to_string = function(v) return tostring(v) end,
    })
    local router = lasgi.Router{ lasgi.Route("/post/{s:slug}", function(req) return req.path_params.s end,
      { name = "post" }) }
    local client = lasgi.TestClient(router)
    assert.equal("hello-world", client:get("/post/hello-world").text)
    assert.equal(404, client:get("/post/Hello").status)
    assert.equal("/post/a-b", router:url_path_for("post", { s = "a-b" }))
    assert.has_error(function() convertors.register("bad name", {}) end,
      "convertors.register: argument 'name' must be an identifier")
  end)
end)
