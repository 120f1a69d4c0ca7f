local logging = require("luvicorn.logging")

local function sink()
  local s = { text = "" }
  function s.write(_, ...) s.text = s.text .. table.concat({ ... }) end
  function s.flush() end
  return s
end

describe("luvicorn.logging", function()
  it("writes Uvicorn-shaped lines at or above the level", function()
    local err = sink()
    local log = logging.new({ level = "warning", err = err })
    log:info("hidden")
    log:warning("shown")
    log:error("also")
    assert.are.equal("WARNING:  shown\nERROR:    also\n", err.text)
    assert.is_true(log:enabled("error"))
    assert.is_false(log:enabled("debug"))
  end)

  it("formats access lines with the response time", function()
    assert.are.equal('127.0.0.1:5 - "GET /a?b HTTP/1.1" 200 OK 1.50ms',
      logging.access_line({ "127.0.0.1", 5 }, "GET", "/a?b", "1.1", 200, "OK", 1.5))
    assert.are.equal('- - "GET / HTTP/1.0" 404 Not Found 0.00ms',
      logging.access_line(nil, "GET", "/", "1.0", 404, "Not Found", 0))
    local out = sink()
    local log = logging.new({ out = out, access_log = true })
    log:access({ "::1", 80 }, "POST", "/", "1.1", 201, "Created", 0.25)
    assert.are.equal('INFO:     ::1:80 - "POST / HTTP/1.1" 201 Created 0.25ms\n', out.text)
  end)

  it("turns the access log off with access_log = false or a level above info", function()
    assert.is_false(logging.new({ access_log = false }).access_enabled)
    assert.is_false(logging.new({ level = "warning" }).access_enabled)
    assert.is_true(logging.new({}).access_enabled)
  end)

  it("rejects unknown levels naming the argument", function()
    assert.has_error(function() logging.new({ level = "loud" }) end)
    local ok, err = pcall(logging.new, { level = "loud" })
    assert.is_false(ok)
    assert.matches("level", err)
  end)
end)
