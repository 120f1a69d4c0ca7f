-- Pipes: new_pipe, pipe_bind/connect over a Unix socket path, names, chmod, pipe_open on pipe() ends
-- and on stdin, pipe(), socketpair().
local H = require "helper"
local uv = H.uv

local function tmp_path(tag)
  return ("%s/luvrs-%s-%d-%d.sock"):format(os.getenv("TMPDIR") or "/tmp", tag, uv.os_getpid(), uv.hrtime() % 1e9)
end

local function close_all(...)
  for _, h in ipairs({ ... }) do
    if not h:is_closing() then h:close() end
  end
  H.run()
end

describe("pipe", function()
  setup(function()
    uv.walk(function(h)
      if h ~= H.guard and not h:is_closing() and not h:has_ref() then h:close() end
    end)
    uv.run("nowait")
  end)
  after_each(H.after_each)

  it("new_pipe makes a pipe handle, ipc or not", function()
    local p = uv.new_pipe()
    assert.are.equal("pipe", p:get_type())
    assert.are.same({ "pipe", 7 }, { uv.handle_get_type(p) })
    assert.matches("^uv_pipe_t: ", tostring(p))
    local q = uv.new_pipe(true)
    assert.are.equal("pipe", q:get_type())
    assert.has_error(function() uv.new_pipe("x") end)
    close_all(p, q)
  end)

  it("echoes over a Unix socket path, with names and chmod", function()
    local path = tmp_path("echo")
    local server = uv.new_pipe(false)
    assert.are.equal(0, server:bind(path))
    assert.are.equal(path, server:getsockname())
    assert.are.equal(0, server:chmod("rw"))
    assert.are.equal(0, uv.pipe_chmod(server, "r"))
    assert.has_error(function() server:chmod("x") end)
    local accepted
    assert.are.equal(0, server:listen(16, H.expect(function(err)
      assert.is_nil(err)
      accepted = uv.new_pipe(false)
      assert.are.equal(0, server:accept(accepted))
      accepted:read_start(function(rerr, data)
        assert.is_nil(rerr)
        if data then accepted:write(data) else accepted:close() end
      end)
    end)))
    local client = uv.new_pipe(false)
    local got = {}
    client:connect(path, H.expect(function(err)
      assert.is_nil(err)
      assert.are.equal(path, client:getpeername())
      assert.are.equal(path, uv.pipe_getpeername(client))
      client:read_start(function(rerr, data)
        assert.is_nil(rerr)
        if data then
          got[#got + 1] = data
          if table.concat(got) == "hello pipe" then client:shutdown() end
        else
          client:close()
        end
      end)
      client:write({ "hello", " ", "pipe" })
    end))
    H.run_until(function() return client:is_closing() and accepted and accepted:is_closing() end)
    assert.are.equal("hello pipe", table.concat(got))
    close_all(server)
    os.remove(path)
  end)

  it("bind on a used path fails with EADDRINUSE", function()
    local path = tmp_path("inuse")
    local a = uv.new_pipe()
    assert.are.equal(0, a:bind(path))
    local b = uv.new_pipe()
    local ok, msg, code = b:bind(path)
    assert.is_nil(ok)
    assert.are.equal("EADDRINUSE", code)
    assert.are.equal("EADDRINUSE: address already in use", msg)
    close_all(a, b)
    os.remove(path)
  end)

  it("connect to a missing path reports ENOENT to the callback", function()
    local c = uv.new_pipe()
    c:connect(tmp_path("missing"), H.expect(function(err) assert.are.equal("ENOENT", err) end))
    H.run()
    close_all(c)
  end)

  it("pipe() gives two descriptors that pipe_open turns into streams", function()
    local fds = uv.pipe({ nonblock = true }, { nonblock = true })
    assert.is_number(fds.read)
    assert.is_number(fds.write)
    local r, w = uv.new_pipe(), uv.new_pipe()
    assert.are.equal(0, r:open(fds.read))
    assert.are.equal(0, uv.pipe_open(w, fds.write))
    assert.is_true(r:is_readable())
    assert.is_false(r:is_writable())
    assert.is_true(w:is_writable())
    assert.is_false(w:is_readable())
    assert.are.equal(fds.read, r:fileno())
    local got = {}
    r:read_start(function(err, data)
      assert.is_nil(err)
      if data then got[#got + 1] = data else r:close() end
    end)
    w:write("through ", H.expect(function(err) assert.is_nil(err) end))
    w:write({ "the ", "pipe" }, function() w:close() end)
    H.run()
    assert.are.equal("through the pipe", table.concat(got))
  end)

  it("pipe() without flags still works", function()
    local fds = uv.pipe()
    local r, w = uv.new_pipe(), uv.new_pipe()
    r:open(fds.read)
    w:open(fds.write)
    assert.are.equal(5, w:try_write("hello"))
    r:read_start(H.expect(function(err, data)
      assert.is_nil(err)
      assert.are.equal("hello", data)
      r:close()
    end))
    H.run_until(function() return r:is_closing() end)
    close_all(w)
  end)

  it("socketpair() gives two connected sockets", function()
    local fds = uv.socketpair("stream", 0, { nonblock = true }, { nonblock = true })
    assert.is_number(fds[1])
    assert.is_number(fds[2])
    local a, b = uv.new_pipe(), uv.new_pipe()
    a:open(fds[1])
    b:open(fds[2])
    assert.is_true(a:is_readable() and a:is_writable())
    b:read_start(H.expect(function(err, data)
      assert.is_nil(err)
      assert.are.equal("pair", data)
      b:close()
    end))
    a:write("pair")
    H.run_until(function() return b:is_closing() end)
    close_all(a)
    local d = uv.socketpair()
    assert.is_number(d[1])
    local x, y = uv.new_pipe(), uv.new_pipe()
    x:open(d[1])
    y:open(d[2])
    close_all(x, y)
  end)

  it("pipe_open(0) reads stdin fed by a pipe", function()
    local script = [[
      local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")
      local p = uv.new_pipe(false)
      assert(p:open(0))
      local got = {}
      p:read_start(function(err, data)
        assert(not err, err)
        if data then got[#got + 1] = data else p:close() end
      end)
      uv.run()
      io.write("got:" .. table.concat(got))
    ]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local cmd = ("printf 'fed through stdin' | LUA_CPATH='./build/?.so;;' lua5.4 %s"):format(path)
    local h = assert(io.popen(cmd))
    local out = h:read("a")
    h:close()
    os.remove(path)
    assert.are.equal("got:fed through stdin", out)
  end)

  it("passes a listening socket to a child over an IPC pipe; the child serves a connection", function()
    local child_src = [[
      local uv = require(os.getenv("LUVRS_IMPL") or "luvrs")
      local ipc = uv.new_pipe(true)
      assert(ipc:open(3))
      ipc:read_start(function(err, data)
        assert(not err, err)
        if not data then ipc:close() return end
        if ipc:pending_count() == 0 then return end
        assert(uv.pipe_pending_count(ipc) == 1)
        assert(ipc:pending_type() == "tcp" and uv.pipe_pending_type(ipc) == "tcp")
        local server = uv.new_tcp()
        assert(ipc:accept(server))
        assert(ipc:pending_count() == 0)
        assert(server:listen(16, function()
          local c = uv.new_tcp()
          server:accept(c)
          c:write("served by child " .. data, function()
            c:close()
            server:close()
            ipc:close()
          end)
        end))
        ipc:write("listening")
      end)
      uv.run()
    ]]
    local server = uv.new_tcp()
    assert.are.equal(0, server:bind("127.0.0.1", 0))
    local port = server:getsockname().port
    local ipc = uv.new_pipe(true)
    local code
    local proc = uv.spawn("lua5.4", {
      args = { "-e", child_src },
      env = { "LUA_CPATH=./build/?.so;;", "LUVRS_IMPL=" .. H.impl, "PATH=" .. os.getenv("PATH") },
      stdio = { nil, nil, 2, ipc },
    }, function(c) code = c end)
    assert.is_userdata(proc)
    local reply, got = nil, {}
    ipc:read_start(function(err, data)
      assert.is_nil(err)
      if data == "listening" then
        local client = uv.new_tcp()
        client:connect("127.0.0.1", port, function(cerr)
          assert.is_nil(cerr)
          client:read_start(function(rerr, chunk)
            assert.is_nil(rerr)
            if chunk then got[#got + 1] = chunk else reply = table.concat(got); client:close() end
          end)
        end)
      elseif not data then
        ipc:close()
      end
    end)
    assert.truthy(ipc:write2("1", server, H.expect(function(err) assert.is_nil(err) end)))
    H.run_until(function() return reply and code end, 10000)
    assert.are.equal("served by child 1", reply)
    assert.are.equal(0, code)
    close_all(server, ipc, proc)
  end)

  it("write2 needs an IPC pipe", function()
    local fds = uv.socketpair()
    local p, q = uv.new_pipe(false), uv.new_pipe(false)
    p:open(fds[1])
    q:open(fds[2])
    local t = uv.new_tcp()
    t:bind("127.0.0.1", 0)
    local ok, _, code = p:write2("x", t)
    assert.is_nil(ok)
    assert.are.equal("EINVAL", code)
    assert.are.equal(0, q:pending_count())
    assert.are.equal(0, select("#", q:pending_type()))
    close_all(p, q, t)
  end)

  it("rejects bad arguments naming the function", function()
    local t = uv.new_timer()
    assert.has_error(function() uv.pipe_bind(t, "x") end)
    close_all(t)
    local ok, err = pcall(uv.pipe_open, nil, 0)
    assert.is_false(ok)
    assert.matches("pipe_open", err)
  end)
end)
