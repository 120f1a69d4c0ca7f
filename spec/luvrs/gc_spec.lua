-- Memory and descriptor hygiene: open/close cycles leave the Lua heap, RSS and fd count flat;
-- (luvrs) unreferenced never-started handles are collected and their sockets closed.
local H = require "helper"
local uv = H.uv

local CYCLES = 10000

local fd_count = H.fd_count

local function full_gc()
  collectgarbage()
  collectgarbage()
end

describe("gc", function()
  after_each(H.after_each)

  it(CYCLES .. " open/close cycles keep the Lua heap, RSS and fd count flat", function()
    -- In a fresh interpreter: what earlier spec files left behind (caches, grown internal stacks)
    -- must not count for or against this loop.
    local cmd = ("LUA_CPATH='./build/?.so;;' lua5.4 spec/luvrs/gc_cycles.lua %s %d"):format(H.impl, CYCLES)
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    assert.is_true(p:close(), "gc_cycles.lua failed: " .. out)
    local kb, rss, fds0, fds1 = out:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
    kb, rss, fds0, fds1 = tonumber(kb), tonumber(rss), tonumber(fds0), tonumber(fds1)
    assert.is_true(fds0 > 2, "fd count " .. tostring(fds0))
    assert.equal(fds0, fds1)
    assert.is_true(kb < 64, ("Lua heap grew by %.1f KiB"):format(kb))
    -- 2 MiB over 10,000 cycles is ~200 bytes a cycle: less than one leaked handle per cycle
    assert.is_true(rss < 2 * 1024 * 1024, ("RSS grew by %.1f KiB"):format(rss / 1024))
  end)

  it(CYCLES .. " connect/close cycles to a listening server keep the fd count flat", function()
    local accepted = 0
    local server, port = H.tcp_server(function(srv)
      local c = uv.new_tcp()
      srv:accept(c)
      c:close()
      accepted = accepted + 1
    end)
    full_gc() -- file handles left to the collector by earlier specs must not close mid-count
    local fds0 = fd_count()
    local kb0
    local n = CYCLES // 10 -- each connection leaves a TIME_WAIT entry: stay far from the port range
    for i = 1, n do
      local c = uv.new_tcp()
      local done = false
      c:connect("127.0.0.1", port, function() c:close(function() done = true end) end)
      H.run_until(function() return done end)
      if i == 100 then
        full_gc()
        kb0 = collectgarbage("count")
      end
    end
    H.run_until(function() return accepted == n end)
    full_gc()
    assert.equal(fds0, fd_count())
    local grew = collectgarbage("count") - kb0
    assert.is_true(grew < 64, ("Lua heap grew by %.1f KiB"):format(grew))
    server:close()
    H.run()
  end)

  describe("unreferenced handles (luvrs)", function()
    if H.impl ~= "luvrs" then
      pending("luv keeps every handle until it is closed")
      return
    end

    it("a never-started tcp handle that is no longer referenced is collected and its fd closed", function()
      full_gc()
      local fds0 = fd_count()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local t = uv.new_tcp()
        assert.equal(0, t:bind("127.0.0.1", 0))
        weak[1] = t
      end
      assert.equal(fds0 + 1, fd_count())
      full_gc()
      uv.run("nowait")
      full_gc()
      assert.is_nil(weak[1])
      assert.equal(fds0, fd_count())
      local seen = 0
      uv.walk(function(h) if h ~= H.guard then seen = seen + 1 end end)
      assert.equal(0, seen)
    end)

    it("a never-started timer that is no longer referenced is collected", function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = uv.new_timer()
      full_gc()
      uv.run("nowait")
      full_gc()
      assert.is_nil(weak[1])
    end)

    it("a started handle is kept alive by the loop even when Lua drops it", function()
      local weak = setmetatable({}, { __mode = "v" })
      local fired = false
      do
        local t = uv.new_timer()
        t:start(10, 0, function() fired = true end)
        weak[1] = t
      end
      full_gc()
      assert.is_not_nil(weak[1])
      H.run()
      assert.is_true(fired)
      weak[1]:close()
      H.run()
    end)

    it("collections that run inside callbacks, while handles come and go, keep the loop sound", function()
      local fds0 = fd_count()
      local ticks = 0
      local t = uv.new_timer()
      local idle = uv.new_idle()
      local kept = {}
      idle:start(function()
        for _ = 1, 20 do uv.new_tcp("inet") end -- dropped at once: collectable
        collectgarbage("step", 64)
      end)
      t:start(1, 1, function()
        ticks = ticks + 1
        local k = uv.new_timer()
        k:start(1, 0, function() k:close() end) -- started: must survive every collection
        kept[#kept + 1] = k
        full_gc()
        if ticks == 100 then
          t:stop()
          idle:stop()
        end
      end)
      H.run(10000)
      t:close()
      idle:close()
      H.run()
      full_gc()
      uv.run("nowait")
      full_gc()
      assert.equal(100, ticks)
      for _, k in ipairs(kept) do assert.is_true(k:is_closing()) end
      assert.equal(fds0, fd_count())
    end)

    it(CYCLES .. " dropped never-started tcp handles leave the fd count, heap and RSS flat", function()
      full_gc()
      for _ = 1, 1000 do uv.new_tcp("inet") end
      full_gc()
      uv.run("nowait")
      full_gc()
      local kb0, rss0, fds0 = collectgarbage("count"), H.rss(), fd_count()
      for i = 1, CYCLES do
        uv.new_tcp("inet")
        if i % 500 == 0 then
          full_gc()
          uv.run("nowait")
        end
      end
      full_gc()
      uv.run("nowait")
      full_gc()
      assert.equal(fds0, fd_count())
      local kb1, rss1 = collectgarbage("count"), H.rss()
      assert.is_true(kb1 - kb0 < 64, ("Lua heap grew by %.1f KiB"):format(kb1 - kb0))
      assert.is_true(rss1 - rss0 < 2 * 1024 * 1024, ("RSS grew by %.1f KiB"):format((rss1 - rss0) / 1024))
    end)
  end)
end)
