-- luvrs.co.pool: keep-alive pools of luvrs.co sockets, against a line-echo server on 127.0.0.1.
local H = require "helper"
local uv = H.uv
local co = require "luvrs.co"
local pool = require "luvrs.co.pool"

local go = H.go

-- Answers each line with "re:<line>\n"; a line "bye" closes the connection after the answer, "two"
-- sends two answers. Counts accepted connections.
local function line_server()
  local st = { accepted = 0 }
  st.server = assert(co.tcp_listen("127.0.0.1", 0, function(s)
    st.accepted = st.accepted + 1
    while true do
      local line = s:read_until("\n")
      if not line then return end
      if line == "two" then
        s:write("re:one\nre:two\n")
      else
        s:write("re:" .. line .. "\n")
      end
      if line == "bye" then return end
    end
  end))
  st.port = st.server.port
  return st
end

local function ask(s, line)
  assert(s:write(line .. "\n"))
  return s:read_until("\n")
end

describe("luvrs.co.pool", function()
  local p, srv
  before_each(function()
    srv = line_server()
  end)
  after_each(function()
    if p then p:close() end
    pool.default:close()
    srv.server:close(true)
    p = nil
    H.run(1000) -- let close callbacks run: luv 1.44 crashes at exit on a listener closed but not yet swept
    H.after_each()
  end)

  it("new checks its options and has defaults", function()
    p = pool.new()
    assert.equal(16, p.size)
    assert.equal(4000, p.idle_timeout)
    assert.has_error(function() pool.new(5) end,
      "luvrs.co.pool.new: argument 'opts' must be a table or nil (got number)")
    assert.has_error(function() pool.new({ size = -1 }) end,
      "luvrs.co.pool.new: argument 'opts.size' must be a non-negative integer (got number)")
    assert.has_error(function() pool.new({ idle_timeout = "x" }) end,
      "luvrs.co.pool.new: argument 'opts.idle_timeout' must be a non-negative number (got string)")
  end)

  it("builds keys like the sockets carry them", function()
    assert.equal("example.com:80", pool.tcp_key("Example.COM", 80))
    assert.equal("[::1]:8080", pool.tcp_key("::1", 8080))
    assert.equal("[::1]:8080", pool.tcp_key("[::1]", 8080))
    assert.equal("unix:/tmp/x.sock", pool.unix_key("/tmp/x.sock"))
    go(function()
      local s = assert(co.tcp_connect("127.0.0.1", srv.port))
      assert.equal(pool.tcp_key("127.0.0.1", srv.port), s.key)
      s:close()
    end)
  end)

  it("reuses one connection for ten sequential exchanges", function()
    p = pool.new({ size = 4 })
    go(function()
      local reused_count = 0
      for i = 1, 10 do
        local s, reused = p:tcp_connect("127.0.0.1", srv.port)
        assert.is_truthy(s)
        if reused then reused_count = reused_count + 1 end
        assert.equal("re:" .. i, ask(s, tostring(i)))
        assert.is_true(p:put(s.key, s))
      end
      assert.equal(9, reused_count)
      assert.equal(1, p:count())
    end)
    assert.equal(1, srv.accepted)
    assert.equal(9, p.hits)
  end)

  it("keeps up to size idle sockets per key and closes the oldest", function()
    p = pool.new({ size = 2 })
    go(function()
      local socks = {}
      for i = 1, 3 do socks[i] = assert(co.tcp_connect("127.0.0.1", srv.port)) end
      local key = socks[1].key
      for i = 1, 3 do assert.is_true(p:put(key, socks[i])) end
      assert.equal(2, p:count(key))
      assert.is_true(socks[1].closed)
      assert.is_false(socks[2].closed)
      -- most recently used first
      assert.equal(socks[3], p:get(key))
      assert.equal(socks[2], p:get(key))
      assert.is_nil(p:get(key))
      socks[2]:close()
      socks[3]:close()
      assert.equal(0, p:count())
    end)
  end)

  it("closes instead of keeping a socket with unread bytes", function()
    p = pool.new()
    go(function()
      local s = assert(co.tcp_connect("127.0.0.1", srv.port))
      assert.equal("re:one", ask(s, "two"))
      co.sleep(20) -- the second answer arrives and stays unread
      assert.same({ nil, "not reusable" }, { p:put(s.key, s) })
      assert.is_true(s.closed)
      assert.same({ nil, "closed" }, { p:put(s.key, s) })
      assert.equal(0, p:count())
    end)
  end)

  it("drops an idle socket after idle_timeout", function()
    p = pool.new({ idle_timeout = 50 })
    go(function()
      local s = assert(co.tcp_connect("127.0.0.1", srv.port))
      assert.is_true(p:put(s.key, s))
      assert.equal(1, p:count())
      co.sleep(20)
      assert.equal(1, p:count())
      co.sleep(80)
      assert.equal(0, p:count())
      assert.is_true(s.closed)
    end)
  end)

  it("drops an idle socket the peer closes", function()
    p = pool.new({ idle_timeout = 0 })
    go(function()
      local s = assert(co.tcp_connect("127.0.0.1", srv.port))
      assert.equal("re:bye", ask(s, "bye"))
      assert.is_true(p:put(s.key, s))
      local t0 = uv.hrtime()
      while p:count() > 0 and uv.hrtime() - t0 < 2e9 do co.sleep(5) end
      assert.equal(0, p:count())
      assert.is_true(s.closed)
      assert.is_nil(p:get(s.key))
    end)
  end)

  it("an idle socket does not keep the loop alive", function()
    p = pool.new()
    go(function()
      local s = assert(co.tcp_connect("127.0.0.1", srv.port))
      assert.is_true(uv.has_ref(s.handle))
      p:put(s.key, s)
      assert.is_false(uv.has_ref(s.handle))
      local again = p:get(s.key)
      assert.equal(s, again)
      assert.is_true(uv.has_ref(s.handle))
      assert.equal("re:x", ask(again, "x"))
      again:close()
    end)
  end)

  it("sock:setkeepalive puts into the default pool", function()
    go(function()
      local s = assert(co.tcp_connect("127.0.0.1", srv.port))
      assert.is_true(s:setkeepalive())
      assert.equal(1, pool.default:count(s.key))
      local s2, reused = pool.default:tcp_connect("127.0.0.1", srv.port)
      assert.equal(s, s2)
      assert.is_true(reused)
      s2:close()
    end)
  end)

  it("pools Unix socket connections by path", function()
    local path = os.tmpname()
    os.remove(path)
    local accepted = 0
    local server = assert(co.unix_listen(path, function(s)
      accepted = accepted + 1
      while true do
        local line = s:read_until("\n")
        if not line then return end
        s:write(line .. "\n")
      end
    end))
    p = pool.new()
    go(function()
      for i = 1, 3 do
        local s = assert(p:unix_connect(path))
        assert.equal(pool.unix_key(path), s.key)
        assert.equal("u" .. i, ask(s, "u" .. i))
        assert(p:put(s.key, s))
      end
    end)
    assert.equal(1, accepted)
    p:close()
    server:close(true)
    os.remove(path)
  end)

  it("a task's cancellation does not close a socket it handed to the pool", function()
    p = pool.new()
    go(function()
      local t = co.spawn(function()
        local s = assert(co.tcp_connect("127.0.0.1", srv.port))
        p:put(s.key, s)
        co.sleep(10000)
      end)
      co.sleep(5)
      t:cancel()
      assert.equal(1, p:count())
    end)
  end)

  it("raises for wrong arguments", function()
    p = pool.new()
    assert.has_error(function() p:get(1) end, "luvrs.co pool:get: argument 'key' must be a string (got number)")
    assert.has_error(function() p:put("k", {}) end,
      "luvrs.co pool:put: argument 'sock' must be a luvrs.co socket (got table)")
    assert.has_error(function() p.count(nil) end)
  end)
end)
