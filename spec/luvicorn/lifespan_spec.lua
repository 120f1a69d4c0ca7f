local lifespan = require("luvicorn.lifespan")
local logging = require("luvicorn.logging")

local function quiet()
  local lines = {}
  return logging.new({ level = "debug", err = { write = function(_, line) lines[#lines + 1] = line end,
    flush = function() end } }), lines
end

describe("luvicorn.lifespan", function()
  it("runs startup and shutdown and shares the state table", function()
    local events = {}
    local app = function(scope, receive, send)
      assert.are.equal("lifespan", scope.type)
      events[#events + 1] = receive().type
      scope.state.db = "ready"
      send({ type = "lifespan.startup.complete" })
      events[#events + 1] = receive().type
      send({ type = "lifespan.shutdown.complete" })
    end
    local log = quiet()
    local l = lifespan.new(app, "on", log)
    local started, stopped
    l:startup(function(ok) started = ok end)
    assert.is_true(started)
    assert.are.equal("ready", l.state.db)
    l:shutdown(function(ok) stopped = ok end)
    assert.is_true(stopped)
    assert.are.same({ "lifespan.startup", "lifespan.shutdown" }, events)
  end)

  it("reports startup.failed with its message", function()
    local l = lifespan.new(function(_, receive, send)
      receive()
      send({ type = "lifespan.startup.failed", message = "no db" })
    end, "on", quiet())
    local res
    l:startup(function(ok, msg) res = { ok, msg } end)
    assert.are.same({ false, "no db" }, res)
  end)

  it("in auto mode treats an error as 'unsupported' and carries on", function()
    local log, lines = quiet()
    local l = lifespan.new(function() error("unsupported scope") end, "auto", log)
    local res
    l:startup(function(ok) res = ok end)
    assert.is_true(res)
    assert.is_true(l.unsupported)
    assert.matches("unsupported", lines[1])
    local down
    l:shutdown(function(ok) down = ok end)
    assert.is_true(down)
  end)

  it("in on mode fails startup on an error", function()
    local l = lifespan.new(function() error("boom") end, "on", quiet())
    local res
    l:startup(function(ok, msg) res = { ok, msg } end)
    assert.is_false(res[1])
    assert.matches("boom", res[2])
  end)

  it("with off does not call the app", function()
    local called = false
    local l = lifespan.new(function() called = true end, "off", quiet())
    local res
    l:startup(function(ok) res = ok end)
    assert.is_true(res)
    assert.is_false(called)
  end)

  it("waits for an app that completes startup later (resumed by someone else)", function()
    local co
    local l = lifespan.new(function(_, receive, send)
      receive()
      co = coroutine.running()
      coroutine.yield() -- stands for a luvrs.co wait
      send({ type = "lifespan.startup.complete" })
      receive()
      send({ type = "lifespan.shutdown.failed", message = "flush failed" })
    end, "on", quiet())
    local res
    l:startup(function(ok) res = ok end)
    assert.is_nil(res)
    assert(coroutine.resume(co))
    assert.is_true(res)
    local down
    l:shutdown(function(ok, msg) down = { ok, msg } end)
    assert.are.same({ false, "flush failed" }, down)
  end)

  it("raises for events out of order and bad arguments", function()
    local err
    local l = lifespan.new(function(_, receive, send)
      receive()
      err = select(2, pcall(send, { type = "lifespan.shutdown.complete" }))
      send({ type = "lifespan.startup.complete" })
    end, "on", quiet())
    l:startup(function() end)
    assert.matches("out of order", err)
    assert.has_error(function() lifespan.new(function() end, "maybe", quiet()) end)
    assert.has_error(function() l:startup() end)
  end)
end)
