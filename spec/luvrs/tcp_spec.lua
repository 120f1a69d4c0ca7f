-- TCP: new_tcp, tcp_open, tcp_bind, tcp_connect, socket options, names, close_reset, write queue;
-- IPv4 and IPv6; EADDRINUSE; the reuseport extension.
local H = require "helper"
local uv = H.uv
local fixtures = require "fixtures"

local close_all = H.close_all

local connected_pair = H.tcp_pair

describe("tcp", function()
  after_each(H.after_each)

  describe("new_tcp", function()
    it("without a family creates no socket until bind or connect", function()
      local t = uv.new_tcp()
      assert.equal("tcp", (t:get_type()))
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { t:fileno() })
      close_all(t)
    end)

    it("with 'inet' or 'inet6' creates the socket at once", function()
      local a, b = uv.new_tcp("inet"), uv.new_tcp("inet6")
      assert.equal("number", type(a:fileno()))
      assert.equal("number", type(b:fileno()))
      close_all(a, b)
    end)

    it("takes the family as an AF_* number too", function()
      local a, b = uv.new_tcp(2), uv.new_tcp(10)
      assert.equal(0, a:bind("127.0.0.1", 0))
      assert.equal(0, b:bind("::1", 0))
      assert.equal("inet", a:getsockname().family)
      assert.equal("inet6", b:getsockname().family)
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.new_tcp(1) })
      close_all(a, b)
    end)

    it("an unsupported family for TCP returns the EINVAL triple", function()
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { uv.new_tcp("unix") })
    end)

    it("an unknown family name raises an error naming new_tcp", function()
      local ok, err = pcall(uv.new_tcp, "foo")
      assert.is_false(ok)
      assert.matches("new_tcp", err, 1, true)
      assert.matches("bad argument #1", err, 1, true)
      assert.matches("foo", err, 1, true)
    end)
  end)

  describe("bind / getsockname", function()
    it("binds 127.0.0.1 port 0 to a free port; getsockname gives ip, port, family", function()
      local t = uv.new_tcp()
      assert.equal(0, uv.tcp_bind(t, "127.0.0.1", 0))
      local name = uv.tcp_getsockname(t)
      assert.equal("127.0.0.1", name.ip)
      assert.equal("inet", name.family)
      assert.equal("integer", math.type(name.port))
      assert.is_true(name.port > 0 and name.port < 65536)
      assert.same(name, t:getsockname())
      close_all(t)
    end)

    it("binds ::1 over IPv6", function()
      local t = uv.new_tcp()
      assert.equal(0, t:bind("::1", 0))
      local name = t:getsockname()
      assert.equal("::1", name.ip)
      assert.equal("inet6", name.family)
      close_all(t)
    end)

    it("getsockname on a socket-less handle returns the EBADF triple", function()
      local t = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { t:getsockname() })
      close_all(t)
    end)

    it("binding twice returns the EINVAL triple", function()
      local t = uv.new_tcp()
      assert.equal(0, t:bind("127.0.0.1", 0))
      assert.same({ nil, "EINVAL: invalid argument", "EINVAL" }, { t:bind("127.0.0.1", 0) })
      close_all(t)
    end)

    -- libuv defers a bind failure to listen(): bind() succeeds and listen() gives the error
    it("a port in use: bind returns 0, listen returns nil, 'EADDRINUSE: ...', 'EADDRINUSE'", function()
      local first, port = H.tcp_server(function() end)
      local second = uv.new_tcp()
      assert.equal(0, second:bind("127.0.0.1", port))
      local res = { n = select("#", second:listen(16, function() end)), second:listen(16, function() end) }
      assert.same({ n = 3, nil, "EADDRINUSE: address already in use", "EADDRINUSE" }, res)
      close_all(first, second)
    end)

    it("a bad IP string raises an error naming the address", function()
      local t = uv.new_tcp()
      local ok, err = pcall(t.bind, t, "not-an-ip", 0)
      assert.is_false(ok)
      assert.matches("not-an-ip", err, 1, true)
      if H.impl == "luvrs" then assert.matches("tcp_bind", err, 1, true) end
      close_all(t)
    end)

    it("ipv6only: an IPv6 wildcard socket refuses IPv4 clients", function()
      local server = uv.new_tcp()
      assert.equal(0, server:bind("::", 0, { ipv6only = true }))
      assert.equal(0, server:listen(16, function() end))
      local port = server:getsockname().port
      local client = uv.new_tcp()
      local got
      client:connect("127.0.0.1", port, function(...) got = { n = select("#", ...), ... } end)
      H.run_until(function() return got end)
      assert.same({ n = 1, "ECONNREFUSED" }, got)
      close_all(server, client)
    end)

    it("without ipv6only an IPv6 wildcard socket also takes IPv4 clients", function()
      local accepted
      local server, port = H.tcp_server(function(srv)
        accepted = uv.new_tcp()
        srv:accept(accepted)
      end, "::")
      local client = uv.new_tcp()
      client:connect("127.0.0.1", port, function() end)
      H.run_until(function() return accepted end)
      local peer = accepted:getpeername()
      assert.equal("::ffff:127.0.0.1", peer.ip)
      assert.equal("inet6", peer.family)
      close_all(server, client, accepted)
    end)
  end)

  describe("connect / getpeername", function()
    it("returns a request; the callback gets one nil argument; both ends know each other", function()
      local accepted
      local server, port = H.tcp_server(function(srv)
        accepted = uv.new_tcp()
        srv:accept(accepted)
      end)
      local client = uv.new_tcp()
      local got
      local req = uv.tcp_connect(client, "127.0.0.1", port, function(...) got = { n = select("#", ...), ... } end)
      assert.equal("userdata", type(req))
      H.run_until(function() return got and accepted end)
      assert.same({ n = 1 }, got)
      local cpeer, cname = client:getpeername(), client:getsockname()
      assert.same({ ip = "127.0.0.1", port = port, family = "inet" }, cpeer)
      assert.same(cname, uv.tcp_getpeername(accepted))
      assert.same(cpeer, accepted:getsockname())
      close_all(server, client, accepted)
    end)

    it("over IPv6", function()
      local a, b, port = connected_pair("::1")
      assert.same({ ip = "::1", port = port, family = "inet6" }, a:getpeername())
      assert.equal("inet6", b:getpeername().family)
      close_all(a, b)
    end)

    it("a refused connection calls back with 'ECONNREFUSED'", function()
      local probe = uv.new_tcp()
      probe:bind("127.0.0.1", 0)
      local port = probe:getsockname().port
      close_all(probe) -- nothing listens on port now
      local client = uv.new_tcp()
      local got
      client:connect("127.0.0.1", port, function(...) got = { n = select("#", ...), ... } end)
      H.run_until(function() return got end)
      assert.same({ n = 1, "ECONNREFUSED" }, got)
      close_all(client)
    end)

    it("connecting twice returns the EALREADY triple", function()
      local server, port = H.tcp_server(function() end)
      local client = uv.new_tcp()
      client:connect("127.0.0.1", port, function() end)
      assert.same({ nil, "EALREADY: connection already in progress", "EALREADY" },
        { client:connect("127.0.0.1", port, function() end) })
      close_all(server, client)
    end)

    it("closing a connecting handle calls the connect callback with ECANCELED", function()
      local server, port = H.tcp_server(function() end)
      local client = uv.new_tcp()
      local got
      client:connect("127.0.0.1", port, function(...) got = { n = select("#", ...), ... } end)
      client:close()
      H.run_until(function() return got end)
      assert.same({ n = 1, "ECANCELED" }, got)
      close_all(server)
    end)

    it("getpeername on an unconnected handle returns the EBADF triple", function()
      local t = uv.new_tcp()
      assert.same({ nil, "EBADF: bad file descriptor", "EBADF" }, { t:getpeername() })
      close_all(t)
    end)

    it("a bad IP string raises an error naming the address", function()
      local t = uv.new_tcp()
      local ok, err = pcall(t.connect, t, "300.1.2.3", 80, function() end)
      assert.is_false(ok)
      assert.matches("300.1.2.3", err, 1, true)
      if H.impl == "luvrs" then assert.matches("tcp_connect", err, 1, true) end
      close_all(t)
    end)
  end)

  describe("options", function()
    it("nodelay, keepalive and simultaneous_accepts return 0", function()
      local a, b = connected_pair()
      assert.equal(0, a:nodelay(true))
      assert.equal(0, uv.tcp_nodelay(a, false))
      assert.equal(0, a:keepalive(true, 30))
      assert.equal(0, uv.tcp_keepalive(a, false))
      local server = H.tcp_server(function() end)
      assert.equal(0, server:simultaneous_accepts(true))
      assert.equal(0, uv.tcp_simultaneous_accepts(server, false))
      close_all(a, b, server)
    end)
  end)

  describe("options before the socket exists", function()
    -- libuv remembers them and applies them when bind/connect creates the socket
    it("nodelay, keepalive and simultaneous_accepts return 0 on a socket-less handle", function()
      local t = uv.new_tcp()
      assert.equal(0, t:nodelay(true))
      assert.equal(0, t:keepalive(true, 10))
      assert.equal(0, t:keepalive(false))
      assert.equal(0, t:simultaneous_accepts(true))
      close_all(t)
    end)

    it("a handle with nodelay set before connect connects and carries data", function()
      local accepted
      local server, port = H.tcp_server(function(srv)
        accepted = uv.new_tcp()
        srv:accept(accepted)
      end)
      local client = uv.new_tcp()
      assert.equal(0, client:nodelay(true))
      assert.equal(0, client:keepalive(true, 30))
      local connected
      client:connect("127.0.0.1", port, function(err) connected = err or true end)
      H.run_until(function() return connected and accepted end)
      assert.is_true(connected)
      local got
      accepted:read_start(function(_, d) got = d end)
      client:write("small")
      H.run_until(function() return got end)
      assert.equal("small", got)
      close_all(server, client, accepted)
    end)
  end)

  describe("close_reset", function()
    it("returns 0, runs the close callback, and the peer sees ECONNRESET", function()
      local a, b = connected_pair()
      local got, closed
      b:read_start(function(...) got = { n = select("#", ...), ... } end)
      assert.equal(0, uv.tcp_close_reset(a, function(...) closed = select("#", ...) end))
      assert.is_true(a:is_closing())
      H.run_until(function() return got and closed end)
      assert.equal(0, closed)
      assert.same({ n = 1, "ECONNRESET" }, got)
      close_all(b)
    end)

    it("close after close_reset raises an error (already closing)", function()
      local a, b = connected_pair()
      a:close_reset()
      local ok, err = pcall(a.close, a)
      assert.is_false(ok)
      assert.matches("already closing", err, 1, true)
      close_all(b)
    end)
  end)

  describe("write_queue_size", function()
    it("tcp_write_queue_size is the stream's write queue size", function()
      local a, b = connected_pair()
      assert.equal(0, uv.tcp_write_queue_size(a))
      local chunk = string.rep("z", 65536)
      while a:try_write(chunk) do end
      a:write("12345")
      assert.equal(5, a:write_queue_size())
      assert.equal(uv.stream_get_write_queue_size(a), a:write_queue_size())
      close_all(a, b)
    end)
  end)

  describe("tcp_open", function()
    it("adopts an existing socket descriptor", function()
      local child = fixtures.tmpfile([[
package.cpath = "./build/?.so;" .. package.cpath
local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")
local t = uv.new_tcp()
print("open", uv.tcp_open(t, math.tointeger(tonumber(arg[1]))))
print("port", t:getsockname().port)
print("listen", t:listen(4, function()
  local c = uv.new_tcp()
  t:accept(c)
  print("accepted")
  c:close()
  t:close()
end))
local client = uv.new_tcp()
client:connect("127.0.0.1", t:getsockname().port, function(err) print("connected", err) client:close() end)
uv.run()
]])
      local py = fixtures.tmpfile([[
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.set_inheritable(True)
print("python", s.getsockname()[1], flush=True)
os.execvp("lua5.4", ["lua5.4", sys.argv[1], str(s.fileno())])
]])
      local p = io.popen(("timeout 10 python3 %s %s 2>&1"):format(py, child))
      local out = p:read("*a")
      p:close()
      os.remove(child)
      os.remove(py)
      local pyport = out:match("^python (%d+)\n")
      assert.is_not_nil(pyport, out)
      assert.equal(("python %s\nopen\t0\nport\t%s\nlisten\t0\n"):format(pyport, pyport), out:match("^.-listen[^\n]*\n"))
      assert.matches("\nconnected\tnil\n", out, 1, true)
      assert.matches("\naccepted\n", out, 1, true)
    end)

    it("a non-number descriptor raises an error naming tcp_open", function()
      local t = uv.new_tcp()
      local ok, err = pcall(uv.tcp_open, t, "x")
      assert.is_false(ok)
      assert.matches("tcp_open", err, 1, true)
      assert.matches("bad argument #2", err, 1, true)
      close_all(t)
    end)
  end)

  describe("luvrs extension: reuseport", function()
    if H.impl ~= "luvrs" then
      pending("tcp_bind {reuseport = true} is a luvrs extension")
      return
    end

    it("two sockets bound with reuseport to one port both listen and accept", function()
      local hits = { 0, 0 }
      local servers = {}
      local accepted = {}
      local port = 0
      for i = 1, 2 do
        local s = uv.new_tcp()
        assert.equal(0, s:bind("127.0.0.1", port, { reuseport = true }))
        port = s:getsockname().port
        assert.equal(0, s:listen(64, function()
          local c = uv.new_tcp()
          s:accept(c)
          accepted[#accepted + 1] = c
          hits[i] = hits[i] + 1
        end))
        servers[i] = s
      end
      assert.equal(servers[1]:getsockname().port, servers[2]:getsockname().port)
      local clients = {}
      for i = 1, 64 do
        clients[i] = uv.new_tcp()
        clients[i]:connect("127.0.0.1", port, function() end)
      end
      H.run_until(function() return hits[1] + hits[2] == 64 end)
      -- the kernel spreads connections by hash: 64 all landing on one socket is vanishingly unlikely
      assert.is_true(hits[1] > 0 and hits[2] > 0, ("hits %d/%d"):format(hits[1], hits[2]))
      close_all(servers[1], servers[2], table.unpack(clients))
      close_all(table.unpack(accepted))
    end)

    it("without reuseport the second socket's listen still gives EADDRINUSE", function()
      local a = uv.new_tcp()
      assert.equal(0, a:bind("127.0.0.1", 0, { reuseport = true }))
      assert.equal(0, a:listen(4, function() end))
      local b = uv.new_tcp()
      b:bind("127.0.0.1", a:getsockname().port)
      assert.same({ nil, "EADDRINUSE: address already in use", "EADDRINUSE" }, { b:listen(4, function() end) })
      close_all(a, b)
    end)
  end)
end)
