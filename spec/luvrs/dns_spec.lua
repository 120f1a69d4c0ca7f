-- DNS: getaddrinfo and getnameinfo, synchronous without a callback, off the loop thread with one.
local H = require "helper"
local uv = H.uv

local function find(list, pred)
  for _, e in ipairs(list) do if pred(e) then return e end end
end

describe("dns", function()
  after_each(H.after_each)

  it("getaddrinfo('localhost') synchronously returns luv's entries", function()
    local res = assert(uv.getaddrinfo("localhost", nil, nil))
    assert.is_true(#res > 0)
    local e = find(res, function(x) return x.addr == "127.0.0.1" and x.socktype == "stream" end)
    assert.is_table(e)
    assert.are.same({ addr = "127.0.0.1", family = "inet", socktype = "stream", protocol = "tcp" }, e)
  end)

  it("getaddrinfo applies hints: family, socktype, protocol, service, canonname", function()
    local res = assert(uv.getaddrinfo("localhost", "http", { family = "inet", socktype = "stream", canonname = true }))
    assert.are.same({ addr = "127.0.0.1", family = "inet", port = 80, socktype = "stream", protocol = "tcp",
      canonname = "localhost" }, res[1])
    local u = assert(uv.getaddrinfo("127.0.0.1", nil, { family = "inet", socktype = "dgram", protocol = "udp" }))
    assert.are.equal(1, #u)
    assert.are.equal("udp", u[1].protocol)
    local six = assert(uv.getaddrinfo(nil, "80", { family = "inet6", socktype = "stream" }))
    assert.are.same({ addr = "::1", family = "inet6", port = 80, socktype = "stream", protocol = "tcp" }, six[1])
    local passive = assert(uv.getaddrinfo(nil, "8080", { family = "inet", socktype = "stream", passive = true }))
    assert.are.equal("0.0.0.0", passive[1].addr)
    local num = assert(uv.getaddrinfo("10.1.2.3", nil, { numerichost = true, socktype = "stream" }))
    assert.are.equal("10.1.2.3", num[1].addr)
  end)

  it("getaddrinfo failures come as EAI_* triples", function()
    local ok, msg, code = uv.getaddrinfo("no-such-host.invalid")
    assert.is_nil(ok)
    assert.are.equal("EAI_NONAME", code)
    assert.are.equal("EAI_NONAME: unknown node or service", msg)
    local ok2, _, code2 = uv.getaddrinfo("localhost", nil, { numerichost = true })
    assert.is_nil(ok2)
    assert.are.equal("EAI_NONAME", code2)
  end)

  it("getaddrinfo('localhost') with a callback resolves while the loop runs", function()
    local res
    local ticks = 0
    local idle = uv.new_idle()
    idle:start(function() ticks = ticks + 1 end)
    local req = uv.getaddrinfo("localhost", nil, { socktype = "stream" }, H.expect(function(err, r)
      assert.is_nil(err)
      res = r
    end))
    assert.truthy(req)
    assert.matches("getaddrinfo", tostring(req))
    assert.is_true(uv.loop_alive())
    H.run_until(function() return res end)
    idle:close()
    H.run()
    assert.is_true(ticks > 0)
    assert.is_table(find(res, function(x) return x.addr == "127.0.0.1" end))
  end)

  it("an asynchronous failure passes the bare error name", function()
    local got
    uv.getaddrinfo("no-such-host.invalid", nil, nil, H.expect(function(err, r)
      got = { err, r }
    end))
    H.run()
    assert.are.same({ "EAI_NONAME" }, got)
  end)

  it("several lookups at once all complete", function()
    local n = 0
    for _ = 1, 5 do
      uv.getaddrinfo("127.0.0.1", nil, nil, function(err) assert.is_nil(err); n = n + 1 end)
    end
    H.run()
    assert.are.equal(5, n)
  end)

  it("getnameinfo sync and async", function()
    local host, service = uv.getnameinfo({ ip = "127.0.0.1", port = 80 })
    assert.are.equal("localhost", host)
    assert.are.equal("http", service)
    local h6, s6 = uv.getnameinfo({ ip = "::1", port = 22, family = "inet6" })
    assert.is_string(h6)
    assert.are.equal("ssh", s6)
    local got
    assert.truthy(uv.getnameinfo({ ip = "127.0.0.1", port = 443 }, H.expect(function(err, h, s)
      assert.is_nil(err)
      got = { h, s }
    end)))
    H.run()
    assert.are.same({ "localhost", "https" }, got)
  end)

  it("rejects bad arguments naming the function", function()
    local ok, err = pcall(uv.getnameinfo, { ip = "bad" })
    assert.is_false(ok)
    assert.matches("getnameinfo", err)
    ok, err = pcall(uv.getaddrinfo, "localhost", nil, 5)
    assert.is_false(ok)
    assert.matches("getaddrinfo", err)
  end)
end)
