--- The server: listening sockets, accepted connections and their transports, timeouts, limits,
--- lifespan, and graceful shutdown on SIGINT/SIGTERM. The HTTP itself is luvicorn.protocols.http.
---@class luvicorn.server
local M = {}

local http = require("luvicorn.protocols.http")
local parsers = require("luvicorn.parsers")
local logging = require("luvicorn.logging")
local lifespan_mod = require("luvicorn.lifespan")
local loop_choice = require("luvicorn.loop_choice")
local binds = require("luvicorn.binds")

local concat, sub, type, pairs, unpack = table.concat, string.sub, type, pairs, table.unpack

local Server = {}
Server.__index = Server
Server.__name = "luvicorn.Server"

local Conn = {}
Conn.__index = Conn
Conn.__name = "luvicorn.Connection"

local CORE = { "new_tcp", "tcp_bind", "listen", "accept", "read_start", "read_stop", "write", "shutdown",
  "close", "new_timer", "timer_start", "now", "hrtime", "run", "stop", "walk" }

---Creates a server for `app` with `config` (a table from luvicorn.config).
---@param app any LASGI app
---@param config table
---@param log? table logger
---@return table server
function M.new(app, config, log)
  if app == nil then error("luvicorn.server.new: argument 'app' is required", 2) end
  if type(config) ~= "table" then error("luvicorn.server.new: argument 'config' must be a table", 2) end
  return setmetatable({
    app = app,
    config = config,
    -- a bad --log-config / --access-log-format raises here for luvicorn.run; the command checks first
    log = log or assert(logging.from_config(config)),
    conns = {},
    nconns = 0,
    listeners = {},
    exit_code = 0,
  }, Server)
end

---------------------------------------------------------------------------------------------------
-- Transport: one per connection.

-- Hands data to the loop's write queue (the socket did not take it now).
local function queue(self, data)
  local ok, err = self.stream:write(data, self.on_write)
  if not ok then return self:abort(err) end
  self.pending = self.pending + 1
end

function Conn:write(data)
  if self.closing then return end
  local stream = self.stream
  local try_write = self.uv_try_write
  -- no write request pending means an empty queue: no need to ask the loop (each call into it counts)
  if try_write and self.pending == 0 then
    -- most responses fit in the socket buffer: a synchronous write needs no request and no callback
    local n, err, code = try_write(stream, data)
    if n then
      local total
      if type(data) == "string" then
        total = #data
      else
        total = 0
        for i = 1, #data do total = total + #data[i] end
      end
      if n == total then return end
      if type(data) ~= "string" then data = concat(data) end
      data = sub(data, n + 1)
    elseif code ~= "EAGAIN" and not (err and err:find("EAGAIN", 1, true)) then
      return self:abort(err)
    end
  end
  return queue(self, data)
end

-- luvrs: uv.write_batched holds the strings until the I/O callbacks of a busy poll have run, then
-- sends each connection's held bytes in one system call, all connections' one after the other, so
-- that a client process is woken once for many responses. The loop keeps the queue and its order, so
-- no pending count is kept here. Both write(data) and writev(...).
local function conn_write_batched(self, data, ...)
  if self.closing then return end
  local q, err
  if type(data) == "table" then
    q, err = self.uv_write_batched(self.stream, unpack(data))
  else
    q, err = self.uv_write_batched(self.stream, data, ...)
  end
  if not q then return self:abort(err) end
end

function Conn:get_write_queue_size()
  if self.closing then return 0 end
  if not self.uv_write_batched then
    if self.pending == 0 then return 0 end
    return self.uv_queue_size(self.stream)
  end
  local q = self.uv_queue_size(self.stream)
  -- Whoever asks may wait for the queue to drain: the callback of an empty write queued behind the
  -- rest says when it has (batched writes have no callback).
  if q > http.LOW_WATER and self.pending == 0 then
    self.pending = 1
    local ok, err = self.stream:write("", self.on_write)
    if not ok then
      self.pending = 0
      self:abort(err)
      return 0
    end
  end
  return q
end

function Conn:pause_reading()
  if not self.closing and self.reading then
    self.reading = false
    self.stream:read_stop()
  end
end

function Conn:resume_reading()
  if not self.closing and not self.reading and not self.eof then
    self.reading = true
    self.stream:read_start(self.on_read)
  end
end

-- Graceful: flush what is queued, send FIN, then close (a bare close could reset the connection and
-- lose the last response when unread request bytes are left in the kernel).
function Conn:close()
  if self.closing then return end
  self.closing = true
  self.close_deadline = self.server.uv.now() + 5000
  local stream = self.stream
  if self.reading then stream:read_stop(); self.reading = false end
  local ok = stream:shutdown(self.on_shutdown)
  if not ok then self:abort() end
end

function Conn:abort(err)
  if self.closed then return end
  self.closed = true
  self.closing = true
  self.abort_error = err
  local stream = self.stream
  if not stream:is_closing() then stream:close(self.on_close) end
end

-- The file range joins the stream's write queue: counted as a pending write so that later writes queue
-- behind it instead of trying the socket first.
local function conn_sendfile(self, path, offset, length, cb)
  self.pending = self.pending + 1
  local ok, err = self.server.uv.sendfile(self.stream, path, offset, length, function(e)
    self.pending = self.pending - 1
    cb(e)
  end)
  if not ok then
    self.pending = self.pending - 1
    cb(err or "EIO")
  end
end

---------------------------------------------------------------------------------------------------

function Server:on_connection(listener)
  local uv = self.uv
  local stream = listener.kind == "pipe" and uv.new_pipe(false) or uv.new_tcp()
  local ok, err = listener.handle:accept(stream)
  if not ok then
    stream:close()
    self.log:warning("accept failed: " .. tostring(err))
    return
  end
  if self.shutting_down then
    stream:close()
    return
  end
  local client -- none on a Unix socket
  if listener.kind == "tcp" then
    if stream.nodelay then stream:nodelay(true) end
    local peer = stream:getpeername()
    if peer then client = { peer.ip, peer.port } end
  end
  -- the loop's functions are called directly: a method lookup on a handle costs more than the call
  local conn = setmetatable({ server = self, stream = stream, reading = true, uv_try_write = uv.try_write,
    uv_queue_size = uv.stream_get_write_queue_size, pending = 0 }, Conn)
  if uv.sendfile then conn.sendfile = conn_sendfile end
  if uv.write_batched then
    conn.uv_write_batched = uv.write_batched
    conn.write, conn.writev = conn_write_batched, conn_write_batched
  end
  local proto = http.new(self.ctx, conn, client, listener.addr)
  conn.proto = proto
  conn.on_read = function(rerr, data)
    if data then
      conn.proto:data_received(data)
    elseif rerr then
      conn:abort(rerr)
    else
      conn.eof = true
      conn.reading = false
      conn.proto:eof_received()
    end
  end
  conn.on_write = function(werr)
    conn.pending = conn.pending - 1
    if werr then return end
    local p = conn.proto
    if (p.want_drain or p.upgraded) and not conn.closing and conn:get_write_queue_size() <= http.LOW_WATER then
      p:drained()
    end
  end
  conn.on_shutdown = function()
    if not stream:is_closing() then
      conn.closed = true
      stream:close(conn.on_close)
    end
  end
  conn.on_close = function()
    self.conns[conn] = nil
    self.nconns = self.nconns - 1
    self.ctx.connections = self.nconns
    conn.proto:connection_lost(conn.abort_error)
    if self.shutting_down and self.nconns == 0 then self:finish_shutdown() end
  end
  self.conns[conn] = true
  self.nconns = self.nconns + 1
  self.ctx.connections = self.nconns
  stream:read_start(conn.on_read)
end

function Server:listen()
  local uv, config, log = self.uv, self.config, self.log
  local worker = self.worker
  local specs, err
  if worker then specs = worker.listeners else specs, err = binds.specs(config) end
  if not specs then return nil, err end
  local function on_conn(listener, lerr)
    if lerr then
      log:error("listen error: " .. tostring(lerr))
      return
    end
    self:on_connection(listener)
  end
  for _, spec in ipairs(specs) do
    local listener
    listener, err = binds.open(uv, spec, { backlog = config.backlog, listen = on_conn,
      reuseport = spec.reuseport })
    if not listener then return nil, err end
    self.listeners[#self.listeners + 1] = listener
    if listener.kind == "tcp" and not self.bound then self.bound = listener.addr end
    -- a worker's sockets were announced by its supervisor
    if not worker then log:info(("Luvicorn running on %s (Press CTRL+C to quit)"):format(listener.text)) end
  end
  return true
end

function Server:close_listeners()
  for _, l in ipairs(self.listeners) do
    -- a socket file belongs to the process that bound it: a worker leaves it to its supervisor
    if self.worker then l.path = nil end
    binds.close(l)
  end
  self.listeners = {}
end

---Stops accepting, closes idle connections, lets busy ones finish (bounded by
-----timeout-graceful-shutdown), then runs lifespan shutdown and stops the loop.
function Server:begin_shutdown()
  if self.shutting_down then return end
  self.shutting_down = true
  self.ctx.shutting_down = true
  self.log:info("Shutting down")
  self:close_listeners()
  for conn in pairs(self.conns) do
    if not conn.closing then conn.proto:shutdown() end
  end
  local t = self.config.timeout_graceful_shutdown
  if self.nconns > 0 and t then
    self.graceful_timer = self.uv.new_timer()
    self.graceful_timer:start(math.floor(t * 1000), 0, function()
      if self.nconns > 0 then
        self.log:warning("Cancel " .. self.nconns .. " running connection(s) at the graceful shutdown timeout")
      end
      for conn in pairs(self.conns) do conn:abort() end
    end)
  end
  if self.nconns == 0 then self:finish_shutdown() end
end

function Server:finish_shutdown()
  if self.finishing then return end
  self.finishing = true
  local function done()
    self.log:info("Finished server process [" .. self.pid .. "]")
    self:close_own_handles()
  end
  if self.lifespan and not self.lifespan.unsupported then
    self.log:info("Waiting for application shutdown.")
    self.lifespan:shutdown(function(ok, msg)
      if ok then
        self.log:info("Application shutdown complete.")
      else
        self.log:error("Application shutdown failed. " .. tostring(msg or ""))
        self.exit_code = 3
      end
      done()
    end)
  else
    done()
  end
end

function Server:close_own_handles()
  for _, name in ipairs({ "sweeper", "graceful_timer", "sigint", "sigterm", "sigusr1", "max_timer" }) do
    local h = self[name]
    if h and not h:is_closing() then h:close() end
  end
  if self.link then self.link:close() end
  self.log:flush()
  self.uv.stop()
end

function Server:force_exit()
  self.log:warning("Second signal: exiting at once")
  for conn in pairs(self.conns) do conn:abort() end
  self.log:flush()
  self.exit_code = 1
  self.forced = true
  self:close_listeners()
  self:close_own_handles()
end

function Server:sweep()
  local now = self.uv.now()
  self.now = now
  self.sec = os.time()
  for conn in pairs(self.conns) do
    if conn.closing then
      if not conn.closed and conn.close_deadline and now >= conn.close_deadline then conn:abort() end
    else
      conn.proto:check_timeout(now)
    end
  end
  self.log:flush()
end

local function run_until(uv, cond)
  while not cond() do
    if not uv.loop_alive() then return false end
    uv.run("once")
  end
  return true
end

---Runs the server until it is shut down. Returns the process exit code: 0 after a graceful shutdown,
---1 after a forced one (second signal), 3 for a startup failure.
---@return integer
function Server:run()
  local config, log = self.config, self.log
  -- before the app starts: a bad trust list is a configuration error, not a reason to run lifespan
  local trust_ok, trust_err = require("luvicorn.proxy").parse(config.forwarded_allow_ips or {})
  if not trust_ok then
    log:error(trust_err)
    return 3
  end
  local ok, uv = pcall(loop_choice.use, config.loop)
  if not ok then
    log:error(tostring(uv))
    return 3
  end
  self.uv = uv
  local okf, ferr = pcall(loop_choice.require_functions, uv, CORE, "the server")
  if okf then
    okf, ferr = pcall(loop_choice.require_functions, uv, { "new_signal", "signal_start" },
      "graceful shutdown on SIGINT/SIGTERM")
  end
  if not okf then
    log:error(tostring(ferr))
    return 3
  end
  self.pid = uv.os_getpid and (math.tointeger(uv.os_getpid()) or uv.os_getpid()) or "?"
  local parser, note = parsers.choose(config.http, uv)
  if note and config.http == "native" then log:debug(note) end
  log:info("Started server process [" .. self.pid .. "]")
  if self.worker then
    local link, lerr = require("luvicorn.worker").link(self, self.worker)
    if not link then
      log:error(lerr)
      return 3
    end
    self.link = link
  end

  self.lifespan = lifespan_mod.new(self.app, config.lifespan, log)
  local started, start_ok, start_msg = false, nil, nil
  if config.lifespan ~= "off" then log:info("Waiting for application startup.") end
  self.lifespan:startup(function(sok, msg) started, start_ok, start_msg = true, sok, msg end)
  if not run_until(uv, function() return started end) then
    log:error("Application startup is waiting on nothing (no pending I/O): giving up.")
    return 3
  end
  if not start_ok then
    log:error("Application startup failed. Exiting. " .. tostring(start_msg or ""))
    return 3
  end
  if config.lifespan ~= "off" and not self.lifespan.unsupported then log:info("Application startup complete.") end

  -- the jitter keeps workers started together from retiring together
  local max_requests = config.limit_max_requests
  if max_requests and (config.limit_max_requests_jitter or 0) > 0 then
    max_requests = max_requests + math.random(0, config.limit_max_requests_jitter)
  end
  self.ctx = http.context({
    app = self.app,
    parse_head = parser.parse_head,
    parse_request = parser.parse_request,
    response_headers = parser.response_headers,
    log = log,
    -- timeouts are checked once per tick anyway: a clock read per tick instead of per request
    clock = function() return self.now end,
    -- the date header changes once a second: the tick's reading of the wall clock is enough
    time = function() return self.sec end,
    hrtime = uv.hrtime,
    max_request_head = config.max_request_head,
    max_headers = config.max_headers,
    max_body_size = config.max_body_size,
    timeout_keep_alive = config.timeout_keep_alive,
    timeout_request_head = config.timeout_request_head,
    root_path = config.root_path,
    limit_concurrency = config.limit_concurrency,
    limit_max_requests = max_requests,
    on_max_requests = function()
      if self.link then
        -- The supervisor starts a replacement. On a shared socket this worker stops accepting now: new
        -- connections wait in the kernel's queue for the others. A --reuse-port socket of its own would
        -- drop its queue when closed, so then it serves on until the supervisor stops it.
        log:warning(("Maximum request limit of %d reached. Retiring."):format(max_requests))
        self.link:send("retire")
        for _, l in ipairs(self.worker.listeners) do
          if l.reuseport then return end
        end
      else
        log:warning(("Maximum request limit of %d exceeded. Terminating process."):format(max_requests))
      end
      self.max_timer = uv.new_timer()
      self.max_timer:start(0, 0, function() self:begin_shutdown() end)
    end,
    proxy_headers = config.proxy_headers,
    forwarded_allow_ips = config.forwarded_allow_ips,
    server_header = config.server_header,
    date_header = config.date_header,
    headers = config.header,
    state = self.lifespan.state,
    uv = uv,
    ws = config.ws,
    ws_config = {
      ws_max_size = config.ws_max_size, ws_max_queue = config.ws_max_queue,
      ws_ping_interval = config.ws_ping_interval, ws_ping_timeout = config.ws_ping_timeout,
      ws_per_message_deflate = config.ws_per_message_deflate,
    },
  })

  -- signals first: the "running on" line must never come before a SIGTERM can be handled
  local function on_signal(signame)
    return function()
      if self.shutting_down then
        self:force_exit()
      else
        log:info("Received " .. signame:upper())
        self:begin_shutdown()
      end
    end
  end
  self.sigint = uv.new_signal()
  self.sigint:start("sigint", on_signal("sigint"))
  self.sigterm = uv.new_signal()
  self.sigterm:start("sigterm", on_signal("sigterm"))
  -- logrotate moves the files, then sends SIGUSR1: later lines go to new files at the same paths
  self.sigusr1 = uv.new_signal()
  self.sigusr1:start("sigusr1", function() log:reopen() end)
  local pok, lok, lerr = pcall(self.listen, self)
  if not pok then lok, lerr = false, lok end
  if not lok then
    log:error(lerr)
    self:close_listeners()
    self.sigint:close()
    self.sigterm:close()
    self.sigusr1:close()
    pcall(uv.run, "nowait")
    return 3
  end
  if self.link then self.link:send("ready") end

  local tick = math.min(config.timeout_keep_alive, config.timeout_request_head) * 1000 / 4
  tick = math.max(50, math.min(250, math.floor(tick)))
  self.now = uv.now()
  self.sec = os.time()
  self.sweeper = uv.new_timer()
  self.sweeper:start(tick, tick, function() self:sweep() end)
  self.sweeper:unref()


  while true do
    local rok, rerr = pcall(uv.run, "default")
    if not rok then
      log:error("Uncaught error in a loop callback\n" .. tostring(rerr))
    elseif self.finishing or self.forced or not uv.loop_alive() then
      break
    end
  end
  -- let close callbacks run
  for _ = 1, 4 do if not uv.loop_alive() then break end; pcall(uv.run, "nowait") end
  log:flush()
  return self.exit_code
end

M.Server = Server
M.Conn = Conn

return M
