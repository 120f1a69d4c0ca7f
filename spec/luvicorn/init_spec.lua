local luvicorn = require("luvicorn")
local fixtures = require("fixtures")

local function tmp_module(source)
  local dir = fixtures.tmpdir()
  local name = "lvapp" .. tostring(math.random(1e9))
  fixtures.write(dir .. "/" .. name .. ".lua", source)
  return dir, name
end

describe("luvicorn.load_app", function()
  it("loads a file path, with and without :attr", function()
    local app = assert(luvicorn.load_app("examples/hello.lua"))
    assert.is_function(app)
    local dir, name = tmp_module("return { web = { app = function() end } }")
    assert.is_function(assert(luvicorn.load_app(dir .. "/" .. name .. ".lua:web.app")))
  end)

  it("loads module.path:attr, module.path (callable, app, application) from --app-dir", function()
    local dir, name = tmp_module("return { main = function() end, app = function() end }")
    assert.is_function(assert(luvicorn.load_app(name .. ":main", false, dir)))
    assert.is_function(assert(luvicorn.load_app(name, false, dir)))
    local dir2, name2 = tmp_module("return { application = setmetatable({}, { __call = function() end }) }")
    assert.is_table(assert(luvicorn.load_app(name2, false, dir2)))
  end)

  it("calls a factory", function()
    local dir, name = tmp_module("return { make = function() return function() end end }")
    assert.is_function(assert(luvicorn.load_app(name .. ":make", true, dir)))
  end)

  it("returns nil and a message for import errors, missing attributes, non-callables", function()
    local app, err = luvicorn.load_app("no_such_module_xyz:app")
    assert.is_nil(app)
    assert.matches("Could not import module", err)
    app, err = luvicorn.load_app("examples/hello.lua:nope")
    assert.is_nil(app)
    assert.matches("not found", err)
    local dir, name = tmp_module("return { app = 42 }")
    app, err = luvicorn.load_app(name, false, dir)
    assert.is_nil(app)
    assert.matches("not callable", err)
    app, err = luvicorn.load_app("missing/file.lua")
    assert.is_nil(app)
    assert.matches("Error loading LASGI app", err)
  end)

  it("names the argument on misuse", function()
    assert.has_error(function() luvicorn.load_app(nil) end,
      "luvicorn.load_app: argument 'spec' must be a non-empty string")
    assert.has_error(function() luvicorn.run(42) end, "luvicorn.run: argument 'app' must be callable")
    for _, opts in ipairs({ { workers = 2 }, { reload = true } }) do
      assert.has_error(function() luvicorn.run(function() end, opts) end,
        "luvicorn.run: options 'workers' and 'reload' need the app as an import string: use the luvicorn "
        .. "command (luvicorn APP --workers N)")
    end
  end)
end)
