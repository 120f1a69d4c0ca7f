local binds = require("luvicorn.binds")
local config = require("luvicorn.config")

local function env(t) return function(name) return t[name] end end

describe("luvicorn.binds", function()
  it("parses every --bind form", function()
    assert.are.same({ kind = "tcp", host = "127.0.0.1", port = 8000 }, binds.parse("127.0.0.1:8000"))
    assert.are.same({ kind = "tcp", host = "::1", port = 0 }, binds.parse("[::1]:0"))
    assert.are.same({ kind = "tcp", host = "localhost", port = 80 }, binds.parse("localhost:80"))
    assert.are.same({ kind = "unix", path = "/run/app.sock" }, binds.parse("unix:/run/app.sock"))
    assert.are.same({ kind = "fd", fd = 3 }, binds.parse("fd://3"))
  end)

  it("refuses what is not an address, naming --bind", function()
    for _, bad in ipairs({ "127.0.0.1", "::1:80", "[::1]", "host:port", "127.0.0.1:65536", "unix:", "fd://x" }) do
      local spec, err = binds.parse(bad)
      assert.is_nil(spec, bad)
      assert.matches("^%-%-bind: ", err)
    end
    assert.has_error(function() binds.parse(nil) end, "luvicorn.binds.parse: argument 's' must be a string")
  end)

  it("lists --bind, --uds and --fd, and the hosts when nothing else is given or --host is", function()
    local function specs(argv) return assert(binds.specs(config.parse(argv, env({})))) end
    assert.are.same({ { kind = "tcp", host = "127.0.0.1", port = 8000 } }, specs({ "app" }))
    assert.are.same({ { kind = "unix", path = "/tmp/a.sock" } }, specs({ "--uds", "/tmp/a.sock", "app" }))
    assert.are.same({ { kind = "unix", path = "/tmp/b" }, { kind = "fd", fd = 5 } },
      specs({ "--bind", "unix:/tmp/b", "--fd", "5", "app" }))
    assert.are.same({ { kind = "unix", path = "/tmp/b" }, { kind = "tcp", host = "127.0.0.1", port = 9 },
      { kind = "tcp", host = "::1", port = 9 } },
      specs({ "--bind", "unix:/tmp/b", "--host", "127.0.0.1", "--host", "::1", "--port", "9", "app" }))
    local s, err = binds.specs(config.parse({ "--bind", "nope", "app" }, env({})))
    assert.is_nil(s)
    assert.matches("nope", err)
  end)

  it("formats IPv6 authorities in brackets", function()
    assert.are.equal("[::1]:80", binds.authority("::1", 80))
    assert.are.equal("127.0.0.1:80", binds.authority("127.0.0.1", 80))
  end)
end)
