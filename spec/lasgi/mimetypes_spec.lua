local mimetypes = require "lasgi.mimetypes"

describe("lasgi.mimetypes", function()
  it("guesses from the extension, case-insensitively", function()
    assert.equal("text/html", mimetypes.guess("index.HTML"))
    assert.equal("text/javascript", mimetypes.guess("/a/b/app.js"))
    assert.equal("image/svg+xml", mimetypes.guess("logo.svg"))
  end)

  it("falls back to a default", function()
    assert.equal("application/octet-stream", mimetypes.guess("README"))
    assert.equal("text/plain", mimetypes.guess("x.unknown", "text/plain"))
  end)
end)
