local H = require("helper")
local choice = require("luvicorn.loop_choice")

describe("luvicorn.loop_choice", function()
  it("loads the named loop module and makes luvicorn.loop return it", function()
    local uv, name = choice.use(H.impl)
    assert.are.equal(H.uv, uv)
    assert.are.equal(H.impl, name)
    assert.are.equal(H.uv, require("luvicorn.loop"))
    -- asking again (or with no name) gives the same module
    assert.are.equal(uv, (choice.use()))
  end)

  it("refuses to switch to the other module once one is in use", function()
    choice.use(H.impl)
    local other = H.impl == "luv" and "luvrs" or "luv"
    assert.has_error(function() choice.use(other) end)
  end)

  it("rejects unknown names, naming the argument", function()
    local ok, err = pcall(choice.use, "uvloop")
    assert.is_false(ok)
    assert.matches("argument 'name'", err)
  end)

  it("reports missing functions clearly", function()
    local ok, err = pcall(choice.require_functions, { a = 1 }, { "a", "new_pipe", "pipe_open" }, "--uds")
    assert.is_false(ok)
    assert.matches("lacks new_pipe, pipe_open, needed for %-%-uds", err)
  end)
end)
