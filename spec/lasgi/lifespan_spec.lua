local lasgi = require "lasgi"
local lifespan = require "lasgi.lifespan"

-- Drives a lifespan app by hand: returns the events it sent.
local function drive(app, state)
  local sent, inbox = {}, { { type = "lifespan.startup" }, { type = "lifespan.shutdown" } }
  local scope = { type = "lifespan", state = state or {} }
  app(scope, function() return table.remove(inbox, 1) end, function(ev) sent[#sent + 1] = ev; return true end)
  return sent, scope.state
end

describe("lasgi.lifespan", function()
  it("runs a function that yields between startup and shutdown", function()
    local log = {}
    local app = lifespan.wrap(function() end, { lifespan = function(app, state, yield)
      assert.is_function(app)
      log[#log + 1] = "start"
      state.pool = "ready"
      yield()
      log[#log + 1] = "stop"
    end })
    local sent, state = drive(app)
    assert.same({ "start", "stop" }, log)
    assert.equal("lifespan.startup.complete", sent[1].type)
    assert.equal("lifespan.shutdown.complete", sent[2].type)
    assert.equal("ready", state.pool)
  end)

  it("reports startup and shutdown failures with a message", function()
    local sent = drive(lifespan.wrap(function() end, { on_startup = { function() error("db down") end } }))
    assert.equal(1, #sent)
    assert.equal("lifespan.startup.failed", sent[1].type)
    assert.matches("db down", sent[1].message)
    sent = drive(lifespan.wrap(function() end, { lifespan = function(_, _, yield) yield(); error("flush failed") end }))
    assert.equal("lifespan.startup.complete", sent[1].type)
    assert.equal("lifespan.shutdown.failed", sent[2].type)
    assert.matches("flush failed", sent[2].message)
  end)

  it("runs hooks in order with the state", function()
    local log = {}
    local sent = drive(lifespan.wrap(function() end, {
      on_startup = { function(s) log[#log + 1] = "a"; s.x = 1 end, function(s) log[#log + 1] = "b" .. s.x end },
      on_shutdown = { function() log[#log + 1] = "c" end },
    }))
    assert.same({ "a", "b1", "c" }, log)
    assert.equal("lifespan.shutdown.complete", sent[2].type)
  end)

  it("passes other scopes to the wrapped app", function()
    local app = lifespan.wrap(function(scope, receive, send) lasgi.PlainTextResponse("inner")(scope, receive, send) end,
      { on_startup = {} })
    assert.equal("inner", lasgi.TestClient(app):get("/").text)
  end)

  it("refuses both styles at once", function()
    local app = lifespan.wrap(function() end, { lifespan = function() end, on_startup = {} })
    assert.has_error(function() drive(app) end,
      "lifespan.run: use either 'lifespan' or 'on_startup'/'on_shutdown', not both")
    assert.has_error(function() lifespan.wrap(function() end) end, "lifespan.wrap: argument 'opts' must be a table")
  end)

  it("gives the state to requests through the test client", function()
    local app = lasgi.App{
      routes = { lasgi.Route("/", function(req) return req.state.greeting end) },
      lifespan = function(_, state, yield) state.greeting = "hello"; yield() end,
    }
    lasgi.TestClient(app):run(function(c) assert.equal("hello", c:get("/").text) end)
  end)
end)
