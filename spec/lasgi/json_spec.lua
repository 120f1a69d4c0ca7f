local json = require "lasgi.json"
local cjson = require "cjson"

describe("lasgi.json", function()
  it("round-trips values", function()
    assert.same({ a = 1, b = { "x", "y" } }, json.decode(json.encode({ a = 1, b = { "x", "y" } })))
  end)

  it("decodes null to json.null and encodes it back", function()
    local v = json.decode('{"a":null,"b":[1,null]}')
    assert.equal(json.null, v.a)
    assert.equal(json.null, v.b[2])
    assert.equal('[null]', json.encode({ json.null }))
  end)

  it("encodes json.array() as [] and a plain empty table as {}", function()
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
    assert.equal('{"items":[]}', json.encode({ items = json.array() }))
    assert.equal('[1,2]', json.encode(json.array({ 1, 2 })))
  end)

  it("encodes sparse arrays with nulls instead of raising", function()
    assert.equal("[1,null,null,4]", json.encode({ [1] = 1, [4] = 4 }))
  end)

  it("returns nil and a message for invalid JSON, raises on unencodable values", function()
    local v, err = json.decode("{oops")
    assert.is_nil(v)
    assert.is_string(err)
    assert.has_error(function() json.encode({ f = print }) end)
    assert.has_error(function() json.decode(1) end, "json.decode: argument 'text' must be a string")
  end)

  it("leaves the global cjson settings alone", function()
    assert.has_error(function() cjson.encode({ [1] = 1, [40] = 4 }) end)
  end)
end)
