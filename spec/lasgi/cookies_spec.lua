local cookies = require "lasgi.cookies"

describe("lasgi.cookies", function()
  it("serialises every attribute in a fixed order", function()
    local s = cookies.serialize("sid", "abc", { max_age = 3600, expires = "Wed, 21 Oct 2015 07:28:00 GMT",
      path = "/app", domain = "example.com", secure = true, httponly = true, samesite = "strict",
      partitioned = true })
    assert.equal("sid=abc; Domain=example.com; expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly; "
      .. "Max-Age=3600; Path=/app; SameSite=strict; Secure; Partitioned", s)
  end)

  it("defaults to Path=/ and SameSite=lax, which can be left out", function()
    assert.equal("a=1; Path=/; SameSite=lax", cookies.serialize("a", "1"))
    assert.equal("a=1", cookies.serialize("a", "1", { path = false, samesite = false }))
  end)

  it("formats a numeric expires as a date that many seconds ahead", function()
    local s = cookies.serialize("a", "1", { expires = 60 })
    local date = s:match("expires=([^;]+)")
    local t = cookies.parse_http_date(date)
    assert.is_true(math.abs(t - (os.time() + 60)) <= 2)
  end)

  it("quotes values that need it and parse() undoes it", function()
    local s = cookies.serialize("a", 'x y;"z\\', { path = false, samesite = false })
    assert.equal('a="x y;\\"z\\\\"', s)
    assert.equal('x y;"z\\', cookies.parse(s).a)
  end)

  it("refuses bad names, samesite values and partitioned without secure", function()
    assert.has_error(function() cookies.serialize("a b", "1") end,
      "set_cookie: argument 'key' must be a cookie name token")
    assert.has_error(function() cookies.serialize("a", "1", { samesite = "loose" }) end,
      "set_cookie: argument 'samesite' must be 'strict', 'lax' or 'none'")
    assert.has_error(function() cookies.serialize("a", "1", { partitioned = true }) end,
      "set_cookie: argument 'partitioned' requires 'secure'")
    assert.has_error(function() cookies.serialize("a", "1", { max_age = 1.5 }) end,
      "set_cookie: argument 'max_age' must be an integer")
  end)

  it("parses a Cookie header; the first value of a name wins", function()
    assert.same({ a = "1", b = "two words", c = "3" }, cookies.parse('a=1; b="two words";c=3; a=9'))
    assert.same({}, cookies.parse(nil))
  end)

  it("formats and parses HTTP dates", function()
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", cookies.http_date(784111777))
    assert.equal(784111777, cookies.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(951782400, cookies.parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"))
    assert.is_nil(cookies.parse_http_date("yesterday"))
  end)
end)
