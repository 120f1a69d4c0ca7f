-- Async handles: new_async, async_send (values passed, sends coalesced), close, unref.
local H = require "helper"
local uv = H.uv

describe("async", function()
  after_each(H.after_each)

  it("new_async makes an active async handle that keeps the loop alive", function()
    local a = uv.new_async(function() end)
    assert.are.same({ "async", 1 }, { uv.handle_get_type(a) })
    assert.matches("^uv_async_t: ", tostring(a))
    assert.is_true(a:is_active())
    assert.is_true(uv.loop_alive())
    a:close()
    H.run()
  end)

  it("async_send runs the callback on the loop with the values sent", function()
    local got
    local a
    a = uv.new_async(H.expect(function(...)
      got = { n = select("#", ...), ... }
      a:close()
    end))
    assert.are.equal(0, uv.async_send(a, "str", 42, true, nil, 1.5))
    assert.is_nil(got)
    H.run()
    assert.are.same({ n = 5, "str", 42, true, nil, 1.5 }, got)
  end)

  it("coalesces sends made before the callback runs", function()
    local calls = {}
    local a = uv.new_async(function(v) calls[#calls + 1] = v end)
    a:send(1)
    a:send(2)
    a:send(3)
    H.run_until(function() return #calls > 0 end)
    uv.run("nowait")
    assert.are.equal(1, #calls)
    a:send("again")
    H.run_until(function() return #calls > 1 end)
    assert.are.equal("again", calls[2])
    a:close()
    H.run()
  end)

  it("a send from inside a callback runs on a later iteration", function()
    local n = 0
    local a
    a = uv.new_async(function()
      n = n + 1
      if n < 3 then a:send() else a:close() end
    end)
    a:send()
    H.run()
    assert.are.equal(3, n)
  end)

  it("an unreferenced async handle does not keep the loop alive", function()
    local a = uv.new_async(function() end)
    a:unref()
    assert.is_false(uv.loop_alive())
    a:close()
    H.run()
  end)

  it("rejects bad arguments naming the function", function()
    local ok, err = pcall(uv.new_async, 5)
    assert.is_false(ok)
    assert.matches("new_async", err)
    local t = uv.new_timer()
    ok, err = pcall(uv.async_send, t)
    assert.is_false(ok)
    assert.matches("async_send", err)
    t:close()
    H.run()
  end)
end)
