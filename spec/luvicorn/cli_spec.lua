local cli = require("luvicorn.cli")

-- Captures io.stdout/io.stderr writes during fn.
local function capture(fn)
  local out, err = {}, {}
  local real_out, real_err = io.stdout, io.stderr
  local function sink(t) return { write = function(_, ...) for _, s in ipairs({ ... }) do t[#t + 1] = s end end,
    flush = function() end, setvbuf = function() end } end
  io.stdout, io.stderr = sink(out), sink(err) -- luacheck: ignore 122
  local ok, res = pcall(fn)
  io.stdout, io.stderr = real_out, real_err -- luacheck: ignore 122
  assert(ok, res)
  return res, table.concat(out), table.concat(err)
end

describe("luvicorn.cli", function()
  it("prints help and exits 0", function()
    local code, out = capture(function() return cli.main({ "--help" }) end)
    assert.are.equal(0, code)
    assert.matches("Usage: luvicorn %[OPTIONS%] APP", out)
  end)

  it("prints the version and exits 0", function()
    local code, out = capture(function() return cli.main({ "--version" }) end)
    assert.are.equal(0, code)
    assert.matches("^Running luvicorn %d+%.%d+%.%d+ with Lua 5%.4", out)
  end)

  it("exits 2 on usage errors", function()
    local code, _, err = capture(function() return cli.main({ "--port", "x", "app" }) end)
    assert.are.equal(2, code)
    assert.matches("Error: %-%-port", err)
    code, _, err = capture(function() return cli.main({}) end)
    assert.are.equal(2, code)
    assert.matches("Missing argument 'APP'", err)
  end)

  it("exits 3 when the app cannot be loaded", function()
    local code, _, err = capture(function()
      return cli.main({ "no_such_module_abc:app", "--loop", os.getenv("LUVRS_IMPL") or "luvrs" })
    end)
    assert.are.equal(3, code)
    assert.matches("Could not import module", err)
  end)

  it("names the argument on misuse", function()
    assert.has_error(function() cli.main("x") end, "luvicorn.cli.main: argument 'argv' must be a table")
  end)
end)
