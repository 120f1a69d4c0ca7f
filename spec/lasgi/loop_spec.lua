local loop = require "lasgi.loop"

describe("lasgi.loop", function()
  local saved_luvrs, saved_luv
  before_each(function() saved_luvrs, saved_luv = package.loaded.luvrs, package.loaded.luv end)
  after_each(function() package.loaded.luvrs, package.loaded.luv = saved_luvrs, saved_luv end)

  it("returns the loop module already loaded, luvrs first", function()
    local a, b = { name = "luvrs" }, { name = "luv" }
    package.loaded.luvrs, package.loaded.luv = a, b
    assert.equal(a, loop.get())
    package.loaded.luvrs = nil
    assert.equal(b, loop.get())
    assert.equal(b, loop.loaded())
  end)

  it("never loads one itself", function()
    package.loaded.luvrs, package.loaded.luv = nil, nil
    assert.is_nil(loop.get())
    assert.is_nil(package.loaded.luvrs)
    assert.is_nil(package.loaded.luv)
  end)
end)
