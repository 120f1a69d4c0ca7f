-- A parent binds one listening TCP socket and shares it with N worker processes over IPC pipes
-- (write2); each worker accepts connections on it. The parent then connects a few clients, prints
-- which worker answered each, and stops the workers.
--   LUA_CPATH='./build/?.so;;' lua5.4 examples/tcp_cluster.lua [workers]
--   (LUVRS_IMPL=luv runs it on luv)
local impl = os.getenv("LUVRS_IMPL") or "luvrs"
local uv = require(impl)

if arg[1] == "--worker" then
  -- Worker: fd 3 is the IPC pipe; the first message brings the listening socket.
  local id = arg[2]
  local ipc = uv.new_pipe(true)
  assert(ipc:open(3))
  local server
  ipc:read_start(function(err, data)
    assert(not err, err)
    if not data then
      -- the parent went away or closed the pipe: stop serving
      if server then server:close() end
      ipc:close()
      return
    end
    if ipc:pending_count() > 0 and not server then
      server = uv.new_tcp()
      assert(ipc:accept(server))
      assert(server:listen(128, function(lerr)
        assert(not lerr, lerr)
        local c = uv.new_tcp()
        if not server:accept(c) then c:close() return end
        c:write(("hello from worker %s (pid %d)\n"):format(id, uv.os_getpid()), function() c:close() end)
      end))
      ipc:write("ready")
    end
  end)
  uv.run()
  return
end

local nworkers = tonumber(arg[1]) or 3
local script = debug.getinfo(1, "S").source:sub(2)
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
local port = server:getsockname().port
print(("sharing 127.0.0.1:%d with %d workers"):format(port, nworkers))

local workers, ready = {}, 0
local env = { "LUVRS_IMPL=" .. impl, "PATH=" .. (os.getenv("PATH") or "") }
if os.getenv("LUA_CPATH") then env[#env + 1] = "LUA_CPATH=" .. os.getenv("LUA_CPATH") end
if os.getenv("LUA_PATH") then env[#env + 1] = "LUA_PATH=" .. os.getenv("LUA_PATH") end

local clients_done = 0
local nclients = nworkers * 2
local function run_clients()
  for i = 1, nclients do
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function(err)
      assert(not err, err)
      local got = {}
      c:read_start(function(rerr, data)
        assert(not rerr, rerr)
        if data then got[#got + 1] = data return end
        io.write(("client %d: %s"):format(i, table.concat(got)))
        c:close()
        clients_done = clients_done + 1
        if clients_done == nclients then
          for _, w in ipairs(workers) do w.ipc:close() end
        end
      end)
    end)
  end
end

for i = 1, nworkers do
  local ipc = uv.new_pipe(true)
  local w = { ipc = ipc }
  w.proc = assert(uv.spawn("lua5.4", {
    args = { script, "--worker", tostring(i) },
    env = env,
    stdio = { nil, 1, 2, ipc },
  }, function(code, signal)
    print(("worker %d exited: code %d, signal %d"):format(i, code, signal))
    w.proc:close()
  end))
  workers[i] = w
  ipc:read_start(function(err, data)
    assert(not err, err)
    if data == "ready" then
      ready = ready + 1
      if ready == nworkers then
        -- every worker listens now; the parent's copy is not needed any more
        server:close()
        run_clients()
      end
    end
  end)
  ipc:write2("listen", server)
end

uv.run()
