local loop = require "lasgi.loop"

describe("lasgi.loop", function()
  it("prefers the loop module already loaded", function()
    local saved = package.loaded.luvrs
    local fake = { name = "fake" }
    package.loaded.luvrs = fake
    local got = loop.loaded()
    local got2 = loop.get()
    package.loaded.luvrs = saved
    assert.equal(fake, got)
    assert.equal(fake, got2)
  end)

  it("loads luvrs or luv when none is loaded yet", function()
    local uv = loop.get()
    assert.is_table(uv)
    assert.is_function(uv.run)
  end)
end)
