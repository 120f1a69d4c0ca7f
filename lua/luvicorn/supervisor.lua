--- The supervisor (master) process of `luvicorn --workers N` and `--reload`: binds the listening sockets
--- once, starts worker processes that serve on them, and keeps the wanted number running.
---
--- Workers are fresh `lua5.4` processes (stock Lua cannot fork): each gets the sockets and one end of a
--- socketpair as inherited descriptors (see luvicorn.worker for what travels over it), runs in its own
--- session so that a terminal's Ctrl+C reaches the supervisor only, and re-reads the same command line.
---
--- Signals: TERM/INT stop every worker gracefully (a second one forces), HUP replaces the workers one at
--- a time (a new one serves before an old one stops), TTIN/TTOU add/remove a worker, USR1 reopens the
--- log files here and in every worker.
---@class luvicorn.supervisor
local M = {}

local binds = require("luvicorn.binds")
local loop_choice = require("luvicorn.loop_choice")

local NEEDED = { "spawn", "process_kill", "new_pipe", "pipe_open", "new_signal", "signal_start", "new_timer",
  "fileno", "exepath", "os_getpid" }

-- Restarts of workers that die at boot (or within QUICK_MS of serving) back off up to MAX_BACKOFF_MS.
local QUICK_MS, FIRST_BACKOFF_MS, MAX_BACKOFF_MS = 1000, 100, 10000
local TICK_MS = 100
-- after a forced stop, how long workers get before SIGKILL
local FORCE_KILL_MS = 2000

local Sup = {}
Sup.__index = Sup

-- A Lua literal for strings, integers, booleans and tables of them: the worker's options travel as
-- source text in `lua5.4 -e`.
local function literal(v)
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" or t == "boolean" then return tostring(v) end
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do
      local key = type(k) == "number" and "[" .. k .. "]" or "[" .. ("%q"):format(k) .. "]"
      parts[#parts + 1] = key .. "=" .. literal(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("luvicorn.supervisor: cannot pass a " .. t .. " to a worker")
end
M.literal = literal

---Runs the supervisor until it stops; returns the exit code (0 graceful, 1 forced, 3 startup failure).
---@param config table from luvicorn.config.parse
---@param argv string[] the command line, given to each worker as is
---@param log table logger
---@return integer
function M.run(config, argv, log)
  local ok, uv = pcall(loop_choice.use, config.loop)
  if not ok then
    log:error(tostring(uv))
    return 3
  end
  local fok, ferr = pcall(loop_choice.require_functions, uv, NEEDED, "worker processes")
  if not fok then
    log:error(tostring(ferr))
    return 3
  end
  local target = config.workers or 1
  if config.reload then
    if config.reload_delay <= 0 then
      log:error("--reload-delay must be above 0")
      return 3
    end
    if target > 1 then log:warning("--reload runs one worker: --workers is ignored") end
    target = 1
  end
  if target < 1 then
    log:error("--workers must be at least 1")
    return 3
  end
  local self = setmetatable({
    uv = uv, config = config, argv = argv, log = log, target = target,
    workers = {}, -- every worker process not yet reaped, in start order
    listeners = {}, stdio = { 0, 1, 2 }, child_listeners = {},
    failures = 0, next_spawn = 0, exit_code = 0, rolling = {},
    pid = math.tointeger(uv.os_getpid()) or uv.os_getpid(),
  }, Sup)
  return self:main()
end

function Sup:main()
  local uv, config, log = self.uv, self.config, self.log
  -- configuration errors once here, not once per worker
  local trust, terr = require("luvicorn.proxy").parse(config.forwarded_allow_ips or {})
  if not trust then
    log:error(terr)
    return 3
  end
  if config.preload then
    -- a fresh process cannot share the loaded app with its workers; this checks it loads, once
    local app, err = require("luvicorn").load_app(config.app, config.factory, config.app_dir)
    if not app then
      log:error(err)
      return 3
    end
  end
  local ok, err = self:bind()
  if not ok then
    log:error(err)
    self:close_listeners()
    return 3
  end
  self.heartbeat_ms = math.max(50, math.min(1000, math.floor(config.timeout_worker_healthcheck * 1000 / 4)))
  self.signals = {}
  for _, name in ipairs({ "sigint", "sigterm", "sighup", "sigttin", "sigttou", "sigusr1" }) do
    local h = uv.new_signal()
    h:start(name, function() self:on_signal(name) end)
    self.signals[#self.signals + 1] = h
  end
  log:info(("Started supervisor process [%s]"):format(tostring(self.pid)))
  if config.reload then
    local reloader = require("luvicorn.reloader")
    -- an empty list (the config's default) means the reloader's defaults
    local function given(list) return list and #list > 0 and list or nil end
    local dirs = given(config.reload_dir)
    self.reloader = reloader.new(uv, {
      dirs = dirs, include = given(config.reload_include), exclude = given(config.reload_exclude),
      delay = config.reload_delay, log = log,
    })
    log:info("Will watch for changes in " .. table.concat(dirs or { "." }, ", "))
    self.reloader:start(function(paths)
      log:warning(("Changes detected in %s. Reloading..."):format(table.concat(paths, ", ", 1, math.min(#paths, 5))
        .. (#paths > 5 and (" and %d more"):format(#paths - 5) or "")))
      self:restart_all()
    end)
  end
  self.ticker = uv.new_timer()
  self.ticker:start(TICK_MS, TICK_MS, function() self:tick() end)
  self:reconcile()
  while not self.done do
    local rok, rerr = pcall(uv.run, "default")
    if not rok then log:error("Uncaught error in the supervisor\n" .. tostring(rerr)) end
    if not uv.loop_alive() then break end
  end
  for _ = 1, 4 do if not uv.loop_alive() then break end; pcall(uv.run, "nowait") end
  log:info(("Finished supervisor process [%s]"):format(tostring(self.pid)))
  log:flush()
  return self.exit_code
end

-- Binds every address once. A worker gets each as an inherited descriptor, except with --reuse-port,
-- where each worker binds its own socket beside the supervisor's (which never listens, so the kernel
-- gives it no connections; it holds the port, and tells port 0's choice to the workers).
function Sup:bind()
  local specs, err = binds.specs(self.config)
  if not specs then return nil, err end
  for _, spec in ipairs(specs) do
    local reuse = self.config.reuse_port and spec.kind == "tcp"
    local listener
    listener, err = binds.open(self.uv, spec, { reuseport = reuse })
    if not listener then return nil, err end
    self.listeners[#self.listeners + 1] = listener
    if reuse then
      self.child_listeners[#self.child_listeners + 1] =
        { kind = "tcp", host = listener.addr[1], port = listener.addr[2], reuseport = true }
    else
      local fd = self.uv.fileno(listener.handle)
      if not fd then return nil, "cannot get the descriptor of " .. listener.text end
      self.stdio[#self.stdio + 1] = fd
      -- the ipc socketpair is the child's descriptor 3; listeners follow from 4
      self.child_listeners[#self.child_listeners + 1] = { kind = "fd", fd = #self.stdio, as = listener.kind }
    end
  end
  return true
end

function Sup:close_listeners()
  for _, l in ipairs(self.listeners) do binds.close(l) end
  self.listeners = {}
end

local function now(self) return self.uv.now() end

-- Serving or booting, and not on its way out: what --workers counts.
local function counted(w) return w.state ~= "stopping" and not w.retiring end
local function booting(w) return w.state == "booting" end

local function count(self, pred)
  local n = 0
  for _, w in ipairs(self.workers) do if pred(w) then n = n + 1 end end
  return n
end

function Sup:spawn()
  local uv, log = self.uv, self.log
  local ipc = uv.new_pipe(false)
  local stdio = { table.unpack(self.stdio, 1, 3) }
  stdio[4] = ipc
  for i = 4, #self.stdio do stdio[i + 1] = self.stdio[i] end
  local opts = { argv = self.argv, ipc_fd = 3, listeners = self.child_listeners, heartbeat_ms = self.heartbeat_ms }
  local code = ("package.path = %q; package.cpath = %q; os.exit(require(\"luvicorn.worker\").main(%s))")
    :format(package.path, package.cpath, literal(opts))
  local w = { ipc = ipc, born = now(self), last_hb = now(self), state = "booting", buf = "" }
  local proc, pid = uv.spawn(uv.exepath(), { args = { "-e", code }, stdio = stdio, detached = true },
    function(status, signal) self:on_exit(w, status, signal) end)
  if not proc then
    ipc:close()
    log:error("cannot start a worker: " .. tostring(pid))
    self:backoff()
    return
  end
  w.proc, w.pid = proc, pid
  self.workers[#self.workers + 1] = w
  ipc:read_start(function(err, data)
    if data then return self:on_message(w, data) end
    if err then log:debug(("worker [%d]: %s"):format(pid, tostring(err))) end
    ipc:read_stop()
  end)
  log:debug(("Started worker [%d]"):format(pid))
end

function Sup:on_message(w, data)
  local buf = w.buf .. data
  for word in buf:gmatch("([^\n]*)\n") do
    if word == "hb" then
      w.last_hb = now(self)
    elseif word == "ready" then
      w.last_hb = now(self)
      w.state, w.ready_at = "ready", now(self)
      self.ever_ready = true
      if not self.announced then
        self.announced = true
        for _, l in ipairs(self.listeners) do
          self.log:info(("Luvicorn running on %s (Press CTRL+C to quit)"):format(l.text))
        end
      end
      -- a replacement serves: one worker on its way out may go now
      for _, old in ipairs(self.workers) do
        if old.retiring and old.state ~= "stopping" then
          self:stop(old)
          break
        end
      end
    elseif word == "retire" then
      if counted(w) then
        w.retiring = true
        self:reconcile()
      end
    end
  end
  w.buf = buf:match("[^\n]*$")
end

-- SIGTERM: the worker finishes what it serves (bounded by --timeout-graceful-shutdown) and exits.
function Sup:stop(w, force)
  if w.exited then return end
  w.state = "stopping"
  self.uv.process_kill(w.proc, "sigterm")
  local t = self.config.timeout_graceful_shutdown
  if force then
    w.kill_at = now(self) + FORCE_KILL_MS
  elseif t and not w.kill_at then
    w.kill_at = now(self) + math.floor(t * 1000) + FORCE_KILL_MS
  end
end

function Sup:backoff()
  self.failures = self.failures + 1
  local delay = math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ^ (self.failures - 1))
  self.next_spawn = now(self) + math.floor(delay)
  if self.failures > 1 then
    self.log:warning(("Workers keep failing: next start in %.1fs"):format(delay / 1000))
  end
end

function Sup:on_exit(w, status, signal)
  local log = self.log
  w.exited = true
  for i, x in ipairs(self.workers) do
    if x == w then table.remove(self.workers, i); break end
  end
  if not w.ipc:is_closing() then w.ipc:close() end
  if not w.proc:is_closing() then w.proc:close() end
  local how = signal ~= 0 and ("signal %d"):format(signal) or ("exit code %d"):format(status)
  if w.state == "stopping" or (w.state == "ready" and status == 0 and signal == 0) then
    -- asked to, or on its own after its request limit: a clean exit needs no backoff
    log:debug(("Worker [%d] stopped (%s)"):format(w.pid, how))
  elseif w.state == "booting" then
    log:error(("Worker [%d] exited before serving (%s)"):format(w.pid, how))
    if status == 3 and not self.ever_ready and not self.config.reload then
      log:error("The application cannot start: stopping.")
      self.exit_code = 3
      return self:shutdown()
    end
    if self.config.reload then
      -- wait for the next change; the previous code, if any, keeps serving
      self.hold = true
      self.rolling = {}
      for _, x in ipairs(self.workers) do x.retiring = nil end
    else
      self:backoff()
    end
  else
    log:warning(("Worker [%d] died (%s): starting a new one"):format(w.pid, how))
    if now(self) - (w.ready_at or 0) < QUICK_MS then self:backoff() else self.failures = 0 end
  end
  self:reconcile()
  if self.stopping and #self.workers == 0 then self:finish() end
end

-- Brings the number of counted workers to the target, and moves a rolling restart one step.
function Sup:reconcile()
  if self.stopping then return end
  if #self.rolling > 0 and count(self, booting) == 0 then
    local old = table.remove(self.rolling, 1)
    if not old.exited and counted(old) then old.retiring = true end
  end
  local n = count(self, counted)
  if n < self.target and not self.hold then
    if now(self) >= self.next_spawn then
      for _ = n + 1, self.target do self:spawn() end
    end
  elseif n > self.target then
    -- the newest go first: they have served least
    for i = #self.workers, 1, -1 do
      local w = self.workers[i]
      if counted(w) then
        self:stop(w)
        n = n - 1
        if n == self.target then break end
      end
    end
  end
end

function Sup:tick()
  local t = now(self)
  local limit = math.floor(self.config.timeout_worker_healthcheck * 1000)
  for _, w in ipairs(self.workers) do
    if not w.killed then
      if t - w.last_hb > limit then
        self.log:error(("Worker [%d] did not answer the health check for %gs: killing it")
          :format(w.pid, self.config.timeout_worker_healthcheck))
        self:kill(w)
      elseif w.kill_at and t >= w.kill_at then
        self.log:warning(("Worker [%d] did not stop in time: killing it"):format(w.pid))
        self:kill(w)
      end
    end
  end
  self:reconcile()
end

function Sup:kill(w)
  w.killed = true
  self.uv.process_kill(w.proc, "sigkill")
end

-- HUP and --reload: every worker is replaced, one at a time, each only once its replacement serves.
function Sup:restart_all()
  self.hold = false
  self.failures, self.next_spawn = 0, 0
  self.rolling = {}
  for _, w in ipairs(self.workers) do
    if counted(w) then self.rolling[#self.rolling + 1] = w end
  end
  self:reconcile()
end

function Sup:on_signal(name)
  local log = self.log
  if name == "sigint" or name == "sigterm" then
    if self.stopping then
      log:warning("Second signal: stopping the workers at once")
      self.exit_code = 1
      for _, w in ipairs(self.workers) do self:stop(w, true) end
      return
    end
    log:info("Received " .. name:upper() .. ": stopping the workers")
    self:shutdown()
  elseif name == "sighup" then
    log:info("Received SIGHUP: replacing the workers one at a time")
    self:restart_all()
  elseif name == "sigttin" then
    self.target = self.target + 1
    log:info(("Received SIGTTIN: %d workers"):format(self.target))
    self:reconcile()
  elseif name == "sigttou" then
    if self.target > 1 then self.target = self.target - 1 end
    log:info(("Received SIGTTOU: %d workers"):format(self.target))
    self:reconcile()
  elseif name == "sigusr1" then
    if log.reopen then log:reopen() end
    for _, w in ipairs(self.workers) do self.uv.process_kill(w.proc, "sigusr1") end
  end
end

function Sup:shutdown()
  if self.stopping then return end
  self.stopping = true
  if self.reloader then self.reloader:stop() end
  for _, w in ipairs(self.workers) do
    if w.state ~= "stopping" then self:stop(w) end
  end
  if #self.workers == 0 then self:finish() end
end

function Sup:finish()
  self.done = true
  self:close_listeners()
  for _, h in ipairs(self.signals) do if not h:is_closing() then h:close() end end
  if not self.ticker:is_closing() then self.ticker:close() end
  self.log:flush()
  self.uv.stop()
end

return M
