-- The server over a real loop (LUVRS_IMPL picks it): accept, serve, keep-alive, graceful shutdown.
local H = require("helper")
local uv = H.uv
local server_mod = require("luvicorn.server")
local config = require("luvicorn.config")
local logging = require("luvicorn.logging")

local function quiet_log()
  local lines = {}
  return logging.new({ level = "info", access_log = false,
    err = { write = function(_, line) lines[#lines + 1] = line end, flush = function() end } }), lines
end

local function hello(scope, _, send)
  if scope.type ~= "http" then error("no lifespan") end
  send({ type = "http.response.start", status = 200 })
  send({ type = "http.response.body", body = "hi " .. scope.path })
end

-- Runs `server` with `client(port, done)` started once it listens; returns the exit code.
local function serve(server, client)
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    client(server.bound[2], function() server:begin_shutdown() end)
  end)
  return server:run()
end

describe("luvicorn.server (" .. H.impl .. ")", function()
  after_each(H.after_each)

  it("serves keep-alive requests on one connection, then shuts down with exit code 0", function()
    local log, lines = quiet_log()
    local server = server_mod.new(hello, config.normalize({ loop = H.impl, port = 0 }), log)
    local got = ""
    local code = serve(server, function(port, done)
      local c = uv.new_tcp()
      c:connect("127.0.0.1", port, function(err)
        assert.is_nil(err)
        c:write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        c:read_start(function(rerr, data)
          assert.is_nil(rerr)
          if data then got = got .. data end
          if select(2, got:gsub("hi /", "")) == 2 or not data then
            c:close()
            done()
          end
        end)
      end)
    end)
    assert.are.equal(0, code)
    assert.matches("hi /a", got)
    assert.matches("hi /b", got)
    local text = table.concat(lines, "\n")
    assert.matches("Luvicorn running on http://127%.0%.0%.1:%d+", text)
    assert.matches("Shutting down", text)
    assert.matches("Finished server process", text)
  end)

  it("closes idle connections on shutdown", function()
    local server = server_mod.new(hello, config.normalize({ loop = H.impl, port = 0 }), quiet_log())
    local eof = false
    local code = serve(server, function(port, done)
      local c = uv.new_tcp()
      c:connect("127.0.0.1", port, function()
        c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local answered = false
        c:read_start(function(_, data)
          if data and not answered then
            answered = true
            done() -- the connection is idle now: shutdown must close it
          elseif not data then
            eof = true
            c:close()
          end
        end)
      end)
    end)
    assert.are.equal(0, code)
    assert.is_true(eof)
  end)

  it("fails with exit code 3 when the port is taken", function()
    local busy = uv.new_tcp()
    busy:bind("127.0.0.1", 0)
    busy:listen(1, function() end)
    local port = busy:getsockname().port
    local log, lines = quiet_log()
    local server = server_mod.new(hello, config.normalize({ loop = H.impl, port = port }), log)
    assert.are.equal(3, server:run())
    busy:close()
    H.run(1000)
    assert.matches("EADDRINUSE", table.concat(lines, "\n"))
  end)

  it("names the argument on misuse", function()
    assert.has_error(function() server_mod.new(nil, {}) end, "luvicorn.server.new: argument 'app' is required")
    assert.has_error(function() server_mod.new(hello, 1) end, "luvicorn.server.new: argument 'config' must be a table")
  end)
end)
