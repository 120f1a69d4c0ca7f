local parsers = require("luvicorn.parsers")

describe("luvicorn.parsers", function()
  local fake_native = function() return nil end

  it("chooses native when the loop module has it", function()
    local p, note = parsers.choose("native", { http_parse_head = fake_native })
    assert.are.equal("native", p.name)
    assert.are.equal(fake_native, p.parse_head)
    assert.is_nil(note)
  end)

  it("falls back to lua, saying why, when the loop module has no native parser", function()
    local p, note = parsers.choose("native", {})
    assert.are.equal("lua", p.name)
    assert.matches("http_parse_head", note)
  end)

  it("chooses lua when asked, even with native available", function()
    assert.are.equal("lua", parsers.choose("lua", { http_parse_head = fake_native }).name)
  end)

  it("lists every available implementation, lua first", function()
    assert.are.equal(1, #parsers.available({}))
    local list = parsers.available({ http_parse_head = fake_native })
    assert.are.same({ "lua", "native" }, { list[1].name, list[2].name })
  end)

  it("names the argument on misuse", function()
    assert.has_error(function() parsers.choose("fast", {}) end,
      "luvicorn.parsers.choose: argument 'which' must be \"native\" or \"lua\", got fast")
  end)
end)
