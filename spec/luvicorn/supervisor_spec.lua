local supervisor = require("luvicorn.supervisor")

describe("luvicorn.supervisor", function()
  it("passes a worker's options as Lua source that loads back to the same values", function()
    local opts = { argv = { "app.lua", "--header", "x-a: \"q\"\n\0\255", "--port", "0" }, ipc_fd = 3,
      listeners = { { kind = "fd", fd = 4, as = "tcp" },
        { kind = "tcp", host = "::1", port = 8000, reuseport = true } },
      heartbeat_ms = 250 }
    local back = assert(load("return " .. supervisor.literal(opts)))()
    assert.are.same(opts, back)
  end)

  it("refuses values that cannot travel as source", function()
    assert.has_error(function() supervisor.literal({ f = print }) end,
      "luvicorn.supervisor: cannot pass a function to a worker")
  end)
end)
