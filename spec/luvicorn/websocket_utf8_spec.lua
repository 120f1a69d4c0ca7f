-- Socket-free specs of the incremental UTF-8 validator used for text messages and close reasons.
local wsutf8 = require "luvicorn.websocket.utf8"

-- Feeds `s` split at every position given; returns whether all feeds and finish() succeeded.
local function check(parts)
  local v = wsutf8.new()
  for _, p in ipairs(parts) do
    if not v:feed(p) then return false end
  end
  return v:finish()
end

local function every_split(s)
  local results = {}
  for i = 0, #s do
    results[#results + 1] = check { s:sub(1, i), s:sub(i + 1) }
  end
  local bytes = {}
  for i = 1, #s do bytes[i] = s:sub(i, i) end
  results[#results + 1] = check(bytes)
  return results
end

local VALID = {
  { "ASCII", "Hello, world" },
  { "2-byte", "κόσμε" },
  { "3-byte", "€ 日本語" },
  { "4-byte", "𝄞 😀" },
  { "boundaries", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf" },
  { "U+D7FF and U+E000 around the surrogates", "\xed\x9f\xbf\xee\x80\x80" },
  { "NUL", "a\0b" },
  { "empty", "" },
}

local INVALID = {
  { "a lone continuation byte", "a\x80b" },
  { "overlong 2-byte NUL", "\xc0\x80" },
  { "overlong 2-byte '/'", "\xc1\xaf" },
  { "overlong 3-byte", "\xe0\x80\xaf" },
  { "overlong 4-byte", "\xf0\x80\x80\xaf" },
  { "a high surrogate", "\xed\xa0\x80" },
  { "a low surrogate", "\xed\xbf\xbf" },
  { "U+110000", "\xf4\x90\x80\x80" },
  { "a 5-byte form", "\xf8\x88\x80\x80\x80" },
  { "0xFE", "\xfe" },
  { "0xFF", "a\xff" },
  { "a truncated 3-byte sequence", "\xe2\x82" },
  { "a truncated sequence before ASCII", "\xe2\x82a" },
  { "the Autobahn 6.3.1 payload", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64" },
}

describe("websocket utf8 validator", function()
  for _, c in ipairs(VALID) do
    it("accepts " .. c[1] .. " however it is split", function()
      assert.is_true(wsutf8.valid(c[2]))
      for i, ok in ipairs(every_split(c[2])) do assert.is_true(ok, "split " .. i) end
    end)
  end

  for _, c in ipairs(INVALID) do
    it("rejects " .. c[1] .. " however it is split", function()
      assert.is_false(wsutf8.valid(c[2]))
      for i, ok in ipairs(every_split(c[2])) do assert.is_false(ok, "split " .. i) end
    end)
  end

  it("fails as soon as a cut sequence cannot be valid, before the message ends", function()
    local v = wsutf8.new()
    assert.is_true(v:feed("ok \xf4"))
    assert.is_false(v:feed("\x90"))
    v = wsutf8.new()
    assert.is_false(v:feed("\xed\xa0"))
    v = wsutf8.new()
    assert.is_false(v:feed("\xe0\x9f"))
    v = wsutf8.new()
    assert.is_false(v:feed("\xf0\x8f"))
  end)

  it("keeps a valid cut sequence pending until finish()", function()
    local v = wsutf8.new()
    assert.is_true(v:feed("\xf0\x9f"))
    assert.is_false(v:finish())
    v = wsutf8.new()
    assert.is_true(v:feed("\xf0\x9f"))
    assert.is_true(v:feed("\x98"))
    assert.is_true(v:feed("\x80!"))
    assert.is_true(v:finish())
  end)

  it("can be reused after finish()", function()
    local v = wsutf8.new()
    assert.is_true(v:feed("\xc3"))
    assert.is_false(v:finish())
    assert.is_true(v:feed("abc"))
    assert.is_true(v:finish())
  end)

  it("validates a large message quickly", function()
    local s = string.rep("aé€😀", 200000)
    local v = wsutf8.new()
    local t = os.clock()
    for i = 1, #s, 65536 do assert.is_true(v:feed(s:sub(i, i + 65535))) end
    assert.is_true(v:finish())
    assert.is_true(os.clock() - t < 1)
  end)

  it("rejects a non-string chunk", function()
    assert.has_error(function() wsutf8.new():feed(1) end, "Utf8Validator:feed: chunk must be a string")
  end)
end)
