local status = require "lasgi.status"

describe("lasgi.status", function()
  it("has reason phrases", function()
    assert.equal("OK", status[200])
    assert.equal("Range Not Satisfiable", status[416])
    assert.equal("Content Too Large", status[413])
  end)
end)
