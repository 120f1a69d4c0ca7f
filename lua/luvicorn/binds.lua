--- The addresses a server listens on: parsing `--host`/`--port`, `--bind`, `--uds` and `--fd` into
--- specs, and opening them as loop handles. Shared by the single-process server, the supervisor (which
--- binds once and hands the descriptors to its workers) and the workers (which adopt them).
---@class luvicorn.binds
local M = {}

local loop_choice = require("luvicorn.loop_choice")

---Formats a host and port as a URL authority (IPv6 in brackets).
---@param host string
---@param port integer
---@return string
function M.authority(host, port)
  if host:find(":", 1, true) then return ("[%s]:%d"):format(host, port) end
  return ("%s:%d"):format(host, port)
end

---Parses one `--bind` value: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH` or `fd://N`.
---@param s string
---@return table|nil spec `{ kind = "tcp", host, port }`, `{ kind = "unix", path }` or `{ kind = "fd", fd }`
---@return string|nil err
function M.parse(s)
  if type(s) ~= "string" then error("luvicorn.binds.parse: argument 's' must be a string", 2) end
  local path = s:match("^unix:(.+)$")
  if path then return { kind = "unix", path = path } end
  local fd = s:match("^fd://(%d+)$")
  if fd then return { kind = "fd", fd = tonumber(fd) } end
  local host, port = s:match("^%[([%x:%.]+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:%[%]]+):(%d+)$") end
  if host and tonumber(port) <= 65535 then return { kind = "tcp", host = host, port = tonumber(port) } end
  return nil, ("--bind: %q is not HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"):format(s)
end

---The listening addresses a config asks for, in order: every `--bind`, then `--uds`, then `--fd`, then
---each `--host` on `--port`. The hosts are used when nothing else is given or when `--host` was given
---(on the command line or as LUVICORN_HOST).
---@param config table
---@return table|nil specs
---@return string|nil err
function M.specs(config)
  local specs = {}
  for _, b in ipairs(config.bind or {}) do
    local spec, err = M.parse(b)
    if not spec then return nil, err end
    specs[#specs + 1] = spec
  end
  if config.uds then specs[#specs + 1] = { kind = "unix", path = config.uds } end
  if config.fd then specs[#specs + 1] = { kind = "fd", fd = config.fd } end
  if #specs == 0 or (config.given and config.given.host) then
    for _, host in ipairs(config.hosts or { config.host }) do
      specs[#specs + 1] = { kind = "tcp", host = host, port = config.port }
    end
  end
  return specs
end

local function resolve(uv, host)
  if host:match("^[%d%.]+$") or host:find(":", 1, true) then return host end
  if uv.getaddrinfo then
    local res = uv.getaddrinfo(host, nil, { socktype = "stream" })
    if not res or not res[1] then return nil, "cannot resolve host " .. host end
    return res[1].addr
  elseif host == "localhost" then
    return "127.0.0.1"
  end
  return nil, ("cannot resolve host %s: the loop module %q has no getaddrinfo; give an IP address")
    :format(host, loop_choice.name or "?")
end

-- A socket file left by a server that is gone refuses connections; one that answers is in use.
local function unix_in_use(uv, path)
  local probe = uv.new_pipe(false)
  local result
  local ok, req = pcall(probe.connect, probe, path, function(err) result = err == nil end)
  if not ok or not req then probe:close(); return false end
  local timer = uv.new_timer()
  timer:start(1000, 0, function() if result == nil then result = false end end)
  while result == nil do uv.run("once") end
  timer:close()
  probe:close()
  uv.run("nowait")
  return result
end

---Opens a spec as a loop handle: binds it (and listens when `opts.listen` is a callback).
---`opts`: `backlog`, `listen` (connection callback; nil: bind only, for a supervisor), `reuseport`.
---Returns a listener `{ handle, kind = "tcp"|"pipe", addr, path, fd, spec, text }`.
---@param uv table
---@param spec table from M.parse / M.specs
---@param opts table
---@return table|nil listener
---@return string|nil err
function M.open(uv, spec, opts)
  local handle, kind, addr, text
  if spec.kind == "fd" then
    kind = spec.as or (uv.guess_handle and uv.guess_handle(spec.fd)) or "tcp"
    if kind == "pipe" then
      loop_choice.require_functions(uv, { "new_pipe", "pipe_open" }, "--fd with a UNIX socket")
      handle = uv.new_pipe(false)
    else
      loop_choice.require_functions(uv, { "tcp_open" }, "--fd")
      handle, kind = uv.new_tcp(), "tcp"
    end
    local ok, err = handle:open(spec.fd)
    if not ok then
      handle:close()
      return nil, ("cannot use file descriptor %d: %s"):format(spec.fd, tostring(err))
    end
    if kind == "tcp" then
      local name = handle:getsockname()
      addr = name and { name.ip, name.port }
    elseif handle.getsockname then
      local path = handle:getsockname()
      if path and path ~= "" then addr = { path, nil } end
    end
    text = spec.as and (kind == "tcp" and addr and "http://" .. M.authority(addr[1], addr[2])
      or "unix socket " .. tostring(addr and addr[1])) or ("socket fd %d"):format(spec.fd)
  elseif spec.kind == "unix" then
    loop_choice.require_functions(uv, { "new_pipe", "pipe_bind" }, "--uds")
    local st = uv.fs_stat and uv.fs_stat(spec.path)
    if st and st.type == "socket" then
      if unix_in_use(uv, spec.path) then
        return nil, ("cannot bind %s: a running server is listening on it"):format(spec.path)
      end
      os.remove(spec.path)
    end
    handle, kind = uv.new_pipe(false), "pipe"
    local ok, err = handle:bind(spec.path)
    if not ok then handle:close(); return nil, ("cannot bind %s: %s"):format(spec.path, tostring(err)) end
    -- the proxy in front usually runs as another user
    if uv.fs_chmod then uv.fs_chmod(spec.path, tonumber("666", 8)) end
    addr, text = { spec.path, nil }, "unix socket " .. spec.path
  else
    local host, err = resolve(uv, spec.host)
    if not host then return nil, err end
    handle, kind = uv.new_tcp(), "tcp"
    local ok
    if opts.reuseport then
      -- luv 1.44 ignores tcp_bind flags it does not know: every worker but one would then fail
      if loop_choice.name ~= "luvrs" then return nil, "--reuse-port needs the luvrs loop" end
      ok, err = handle:bind(host, spec.port, { reuseport = true })
    else
      ok, err = handle:bind(host, spec.port)
    end
    if not ok then
      handle:close()
      return nil, ("cannot bind %s: %s"):format(M.authority(host, spec.port), tostring(err))
    end
    addr, text = { host, spec.port }, "http://" .. M.authority(host, spec.port)
  end
  local listener = { handle = handle, kind = kind, addr = addr, spec = spec, text = text,
    path = spec.kind == "unix" and spec.path or nil }
  if opts.listen then
    local ok, err = handle:listen(opts.backlog or 2048, function(err)
      opts.listen(listener, err)
    end)
    if not ok then
      M.close(listener)
      return nil, ("cannot listen on %s: %s"):format(text, tostring(err))
    end
  end
  if spec.kind == "tcp" then
    -- after listen: libuv reports a taken port there, not at bind; and port 0 is chosen by now
    local name, err = handle:getsockname()
    if not name then
      M.close(listener)
      return nil, ("cannot bind %s: %s"):format(text, tostring(err))
    end
    listener.addr = { name.ip, name.port }
    listener.text = "http://" .. M.authority(name.ip, name.port)
  end
  return listener
end

---Closes a listener; a socket file this process bound is removed.
---@param listener table
function M.close(listener)
  if not listener.handle:is_closing() then listener.handle:close() end
  if listener.path then os.remove(listener.path) end
end

return M
