-- luvrs.co: coroutine-style I/O over a luv-shaped loop (luvrs or the real luv).
--
-- Every operation suspends the calling coroutine and is resumed from a loop callback, so the same code
-- runs inside a Luvicorn request coroutine, a task made by co.spawn, or a script driven by co.run.
-- I/O failures are returned as `nil, err` (never raised); misuse raises, naming the function.
local co = {}

local pack, unpack = table.pack, table.unpack
local concat = table.concat
local traceback = debug.traceback
local running, yield, cresume, cstatus, cclose =
  coroutine.running, coroutine.yield, coroutine.resume, coroutine.status, coroutine.close

co.HIGH_WATER = 65536 -- write(): bytes left queued before it waits; read side: buffer size that pauses reading
co.DEFAULT_TIMEOUTS = { connect = 60000, send = 60000, read = 60000 }

---------------------------------------------------------------------------------------------------
-- The loop module

local uv

local function pick_loop()
  local m = package.loaded.luvrs or package.loaded.luv
  if type(m) == "table" then return m end
  local ok, mod = pcall(require, "luvrs")
  if ok and type(mod) == "table" then return mod end
  return require("luv")
end

---Uses `loop` (a luv-shaped module) from now on instead of the one found automatically.
---@param loop table
function co.set_loop(loop)
  if type(loop) ~= "table" or type(loop.new_timer) ~= "function" then
    error("luvrs.co.set_loop: argument 'loop' must be a luv-shaped module table", 2)
  end
  uv = loop
end

local function U()
  if not uv then uv = pick_loop() end
  return uv
end

---The loop module luvrs.co uses.
---@return table
co.loop = U

---------------------------------------------------------------------------------------------------
-- Argument checks

local function argerr(fname, arg, want, got)
  error(("%s: argument '%s' must be %s (got %s)"):format(fname, arg, want, type(got)), 3)
end
-- For luvrs.co.pool and luvrs.co.http: the same wording everywhere, blaming the caller's caller.
co._argerr = argerr

local function check_ms(fname, arg, v, optional)
  if v == nil and optional then return end
  if math.type(v) == nil or v < 0 or v ~= v or v == math.huge then
    argerr(fname, arg, "a non-negative number of milliseconds", v)
  end
end

local function check_opts(fname, opts)
  if opts ~= nil and type(opts) ~= "table" then argerr(fname, "opts", "a table or nil", opts) end
  return opts or {}
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- luv gives callback errors as bare names ("ECONNRESET") or "NAME: message"; we return bare names.
local function errname(err, name)
  if name then return name end
  if type(err) ~= "string" then return tostring(err) end
  return err:match("^([%w_]+):") or err
end

---------------------------------------------------------------------------------------------------
-- Suspension: an op is one wait of one coroutine for one luvrs.co event.

local current_op = setmetatable({}, { __mode = "k" }) -- thread -> op it waits on (for cancel)
local task_of = setmetatable({}, { __mode = "k" })    -- thread -> task

-- Wake-ups are queued and resumed from one flat loop, so a coroutine finishing (and waking its
-- waiters, which wake theirs...) never nests resumes deeper than one level.
local ready, ready_head, ready_tail, draining = {}, 1, 0, false

local function drain()
  draining = true
  local first_err
  while ready_head <= ready_tail do
    local item = ready[ready_head]
    ready[ready_head] = nil
    ready_head = ready_head + 1
    local th = item.thread
    if cstatus(th) == "suspended" and current_op[th] == item.op then
      current_op[th] = nil
      local ok, err = cresume(th, unpack(item.results, 1, item.results.n))
      -- A coroutine handles its own errors (conventions); one that did not is a bug to surface.
      if not ok and not first_err then first_err = err end
    end
  end
  ready_head, ready_tail, draining = 1, 0, false
  if first_err then error(first_err, 0) end
end

local function new_op(fname, level)
  local th, main = running()
  if main then
    error(fname .. ": must be called from a coroutine (use co.run, co.spawn or a server request)", (level or 2) + 1)
  end
  return { thread = th, done = false, suspended = false }
end

-- Marks `op` done and releases what it holds (timers, hooks, requests); false if it already was.
local function settle(op)
  if op.done then return false end
  op.done = true
  local cleanup = op.cleanup
  if cleanup then op.cleanup = nil; cleanup() end
  return true
end

---Completes `op` with the given results, resuming its coroutine if it already yielded.
local function finish(op, ...)
  if not settle(op) then return end
  if op.suspended then
    ready_tail = ready_tail + 1
    ready[ready_tail] = { thread = op.thread, op = op, results = pack(...) }
    if not draining then drain() end
  else
    op.results = pack(...)
  end
end

local function schedule_cancel(task)
  local t = U().new_timer()
  t:start(0, 0, function()
    t:close()
    task:cancel()
  end)
end

---Suspends the calling coroutine until `op` is finished; returns the op's results.
local function await(op)
  if op.done then return unpack(op.results, 1, op.results.n) end
  op.suspended = true
  current_op[op.thread] = op
  local task = task_of[op.thread]
  if task and task.cancel_requested then schedule_cancel(task) end
  local r = pack(yield())
  if not op.done then
    error("luvrs.co: a coroutine waiting on a luvrs.co operation was resumed by someone else", 2)
  end
  return unpack(r, 1, r.n)
end

local function close_handle(h)
  if h and not h:is_closing() then h:close() end
end

-- Timers count from the loop's cached time, which can lag behind when earlier callbacks in the same
-- iteration took long; refreshing it first keeps sleeps and timeouts from ending early.
local function new_timer(ms, cb)
  U().update_time()
  local t = U().new_timer()
  t:start(ms, 0, cb)
  return t
end

---------------------------------------------------------------------------------------------------
-- Tasks

---@class luvrs.co.Task
---@field thread thread
local Task = {}
Task.__index = Task
Task.__name = "luvrs.co.task"

local error_handler = function(msg)
  io.stderr:write("luvrs.co: unhandled task error: ", tostring(msg), "\n")
end

---Sets the function called with (message, task) when a task fails and nobody ever looked at its result
---(and when a co.tcp_listen connection handler raises). The default writes to stderr.
---@param fn fun(msg: string, task: luvrs.co.Task)
function co.set_error_handler(fn)
  if not callable(fn) then argerr("luvrs.co.set_error_handler", "fn", "a function", fn) end
  error_handler = fn
end

Task.__gc = function(self)
  if self.state == "failed" and not self.observed then pcall(error_handler, self.results[2], self) end
end

local function close_owned(task)
  local owned = task.owned
  task.owned = nil
  if owned then
    for sock in pairs(owned) do
      if sock.owner == task then sock:close() end
    end
  end
end

local function task_done(task, state, results)
  task.state = state
  task.results = results
  current_op[task.thread] = nil
  if state ~= "done" then close_owned(task) end
  local hooks = task.on_done
  task.on_done = {}
  for i = 1, #hooks do hooks[i](task) end
end

local function remove_hook(task, fn)
  local hooks = task.on_done
  for i = #hooks, 1, -1 do
    if hooks[i] == fn then table.remove(hooks, i) end
  end
end

local function task_body(task, fn, ...)
  local r = pack(xpcall(fn, traceback, ...))
  if r[1] then task_done(task, "done", r)
  else task_done(task, "failed", pack(false, r[2])) end
end

local function is_task(v) return getmetatable(v) == Task end

---Runs `fn(...)` in a new coroutine, at once until it first waits; returns its task.
---@param fn function
---@return luvrs.co.Task
function co.spawn(fn, ...)
  if not callable(fn) then argerr("luvrs.co.spawn", "fn", "a function", fn) end
  local task = setmetatable({ state = "running", on_done = {}, observed = false }, Task)
  local th = coroutine.create(task_body)
  task.thread = th
  task_of[th] = task
  local ok, err = cresume(th, task, fn, ...)
  if not ok then error(err, 0) end
  return task
end

---The task whose coroutine is running, or nil (e.g. in a server's request coroutine).
---@return luvrs.co.Task?
function co.current()
  return task_of[running()]
end

---"running", "done", "failed" or "cancelled".
---@return string
function Task:status()
  if self.state ~= "running" then self.observed = true end
  return self.state
end

---The results without waiting: `true, ...` / `false, err`, or nil, "running" if not finished.
function Task:result()
  if self.state == "running" then return nil, "running" end
  self.observed = true
  return unpack(self.results, 1, self.results.n)
end

---Waits for the task: `true, results...` when fn returned, `false, err` when it raised (err with
---traceback) or `false, "cancelled"`; `nil, "timeout"` when `timeout` ms passed first.
---@param timeout? integer
function Task:wait(timeout)
  if not is_task(self) then argerr("luvrs.co task:wait", "self", "a task", self) end
  check_ms("luvrs.co task:wait", "timeout", timeout, true)
  local op = new_op("luvrs.co task:wait")
  if op.thread == self.thread then error("luvrs.co task:wait: a task cannot wait for itself", 2) end
  if self.state ~= "running" then return self:result() end
  local timer
  local function hook() finish(op, self:result()) end
  self.on_done[#self.on_done + 1] = hook
  if timeout then timer = new_timer(timeout, function() finish(op, nil, "timeout") end) end
  op.cleanup = function()
    remove_hook(self, hook)
    close_handle(timer)
  end
  return await(op)
end

---Stops the task. A task waiting in a luvrs.co operation is stopped at once: the operation's timers
---and requests are released, its coroutine is closed (pending to-be-closed variables run), and the
---sockets it opened are closed (not those handed to a pool). Otherwise it stops at its next operation.
---@return boolean cancelled false when the task had already finished
function Task:cancel()
  if not is_task(self) then argerr("luvrs.co task:cancel", "self", "a task", self) end
  if self.state ~= "running" then return false end
  local th = self.thread
  local st = cstatus(th)
  if st == "running" then error("luvrs.co task:cancel: a task cannot cancel itself", 2) end
  local op = current_op[th]
  if st == "suspended" and op then
    settle(op)
    current_op[th] = nil
    cclose(th)
    task_done(self, "cancelled", pack(false, "cancelled"))
    return true
  end
  self.cancel_requested = true
  return true
end

local function check_tasks(fname, tasks)
  if type(tasks) ~= "table" then argerr(fname, "tasks", "an array of tasks", tasks) end
  for i = 1, #tasks do
    if not is_task(tasks[i]) then
      error(("%s: argument 'tasks' must be an array of tasks (item %d is a %s)"):format(fname, i, type(tasks[i])), 3)
    end
  end
end

---Waits until every task finished. Returns an array with, per task, `table.pack` of its result
---(`{true, ...}` or `{false, err}`), or nil, "timeout".
---@param tasks luvrs.co.Task[]
---@param timeout? integer
---@return table[]|nil, string?
function co.wait_all(tasks, timeout)
  check_tasks("luvrs.co.wait_all", tasks)
  check_ms("luvrs.co.wait_all", "timeout", timeout, true)
  local op = new_op("luvrs.co.wait_all")
  local function collect()
    local out = {}
    for i, t in ipairs(tasks) do out[i] = pack(t:result()) end
    return out
  end
  local left = 0
  for _, t in ipairs(tasks) do
    if t.state == "running" then left = left + 1 end
  end
  if left == 0 then return collect() end
  local hooked, timer = {}, nil
  local function hook()
    left = left - 1
    if left == 0 then finish(op, collect()) end
  end
  for _, t in ipairs(tasks) do
    if t.state == "running" and not hooked[t] then
      hooked[t] = true
      t.on_done[#t.on_done + 1] = hook
    elseif t.state == "running" then
      left = left - 1 -- the same task listed twice counts once
    end
  end
  if timeout then timer = new_timer(timeout, function() finish(op, nil, "timeout") end) end
  op.cleanup = function()
    for t in pairs(hooked) do remove_hook(t, hook) end
    close_handle(timer)
  end
  return await(op)
end

---Waits until one of the tasks finished; returns that task followed by its result (`true, ...` or
---`false, err`), or nil, "timeout". Already finished tasks win in array order.
---@param tasks luvrs.co.Task[]
---@param timeout? integer
function co.wait_any(tasks, timeout)
  check_tasks("luvrs.co.wait_any", tasks)
  check_ms("luvrs.co.wait_any", "timeout", timeout, true)
  if #tasks == 0 then error("luvrs.co.wait_any: argument 'tasks' must not be empty", 2) end
  local op = new_op("luvrs.co.wait_any")
  for _, t in ipairs(tasks) do
    if t.state ~= "running" then return t, t:result() end
  end
  local timer
  local function hook(t) finish(op, t, t:result()) end
  for _, t in ipairs(tasks) do t.on_done[#t.on_done + 1] = hook end
  if timeout then timer = new_timer(timeout, function() finish(op, nil, "timeout") end) end
  op.cleanup = function()
    for _, t in ipairs(tasks) do remove_hook(t, hook) end
    close_handle(timer)
  end
  return await(op)
end

---Suspends the calling coroutine for `ms` milliseconds (0: until the next loop iteration).
---@param ms integer
---@return true
function co.sleep(ms)
  check_ms("luvrs.co.sleep", "ms", ms)
  local op = new_op("luvrs.co.sleep")
  local timer = new_timer(ms, function() finish(op, true) end)
  op.cleanup = function() close_handle(timer) end
  return await(op)
end

local in_run = false

---Runs the loop until `fn(...)` returns; returns its results, or raises its error. For scripts: call
---it from the main program, not from inside a loop callback.
---@param fn function
function co.run(fn, ...)
  if not callable(fn) then argerr("luvrs.co.run", "fn", "a function", fn) end
  if in_run then error("luvrs.co.run: already running (co.run cannot be nested)", 2) end
  local loop = U()
  in_run = true
  local ok, err = pcall(function(...)
    local task = co.spawn(fn, ...)
    task.observed = true
    while task.state == "running" do
      if not loop.loop_alive() then
        task:cancel()
        error("luvrs.co.run: fn is still waiting but the loop has nothing left to do", 0)
      end
      loop.run("once")
    end
    return task
  end, ...)
  in_run = false
  if not ok then error(err, 0) end
  local r = err.results
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

---------------------------------------------------------------------------------------------------
-- Sockets

---@class luvrs.co.Socket
---@field handle userdata the luv tcp or pipe handle (for options such as keepalive)
local Socket = {}
Socket.__index = Socket
Socket.__name = "luvrs.co.socket"
Socket.__close = function(self) if not self.closed then self:close() end end
co.Socket = Socket

local function is_socket(v) return getmetatable(v) == Socket end

local function check_self(fname, self)
  if not is_socket(self) then
    error(("%s: argument 'self' must be a luvrs.co socket (got %s); use sock:method()"):format(fname, type(self)), 3)
  end
end

local function own(sock, thread)
  local task = task_of[thread or running()]
  sock.owner = task
  if task then
    task.owned = task.owned or setmetatable({}, { __mode = "k" })
    task.owned[sock] = true
  end
end

local function disown(sock)
  local task = sock.owner
  if task and task.owned then task.owned[sock] = nil end
  sock.owner = nil
end

local on_read

local function start_reading(s)
  if s.reading or s.eof or s.rerr or s.closed then return end
  s.reading = true
  local ok, err, name = s.handle:read_start(function(rerr, data) on_read(s, rerr, data) end)
  if not ok then
    s.reading = false
    s.rerr = errname(err, name)
  end
end

local function stop_reading(s)
  if s.reading then
    s.reading = false
    if not s.handle:is_closing() then s.handle:read_stop() end
  end
end

-- Received bytes not yet consumed: an array of strings joined only when a reader looks at them.
local function collapse(s)
  local parts = s.parts
  if #parts > 1 then
    local all = concat(parts)
    s.parts = { all }
    return all
  end
  return parts[1] or ""
end

local function take(s, n)
  local b = collapse(s)
  if n >= #b then
    s.parts, s.size = {}, 0
    return b
  end
  s.parts = { b:sub(n + 1) }
  s.size = s.size - n
  return b:sub(1, n)
end

local function try_reader(s)
  local op = s.reader
  local r = op.try(s)
  if r then
    s.reader = nil
    finish(op, unpack(r, 1, r.n))
  end
end

function on_read(s, err, data)
  if s.closed then return end
  if err then
    s.rerr = errname(err)
    stop_reading(s)
  elseif data then
    s.parts[#s.parts + 1] = data
    s.size = s.size + #data
  else
    s.eof = true
    stop_reading(s)
  end
  if s.reader then
    try_reader(s)
  elseif s.on_idle then
    s.on_idle(s)
  end
  -- Backpressure: with no reader waiting for more, stop pulling from the kernel past the high-water mark.
  if not s.reader and s.size >= co.HIGH_WATER then stop_reading(s) end
end

local function timer_of(s, field)
  local t = s[field]
  if not t then
    t = U().new_timer()
    s[field] = t
  end
  return t
end

-- One read at a time: `try(s)` returns a packed result when it can answer, or nil to keep waiting.
local function read_op(s, fname, try)
  local op = new_op(fname, 3)
  if s.closed then return nil, "closed" end
  if s.reader then error(fname .. ": another coroutine is already reading this socket", 3) end
  local r = try(s)
  if r then return unpack(r, 1, r.n) end
  s.reader = op
  op.try = try
  start_reading(s)
  local ms = s.timeouts.read
  local timer
  if ms > 0 then
    timer = timer_of(s, "rtimer")
    U().update_time()
    timer:start(ms, 0, function()
      if s.reader == op then s.reader = nil end
      finish(op, nil, "timeout")
    end)
  end
  op.cleanup = function()
    if s.reader == op then s.reader = nil end
    if timer and not timer:is_closing() then timer:stop() end
  end
  return await(op)
end

local function end_err(s)
  if s.rerr then return s.rerr end
  return "closed"
end

---Reads at most `n` bytes (default 65536): whatever is buffered, or waits for the next packet.
---@param n? integer
---@return string|nil data, string? err
function Socket:read(n)
  check_self("luvrs.co sock:read", self)
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
    argerr("luvrs.co sock:read", "n", "a positive integer", n)
  end
  n = n or 65536
  return read_op(self, "luvrs.co sock:read", function(s)
    if s.size > 0 then return pack(take(s, n)) end
    if s.eof or s.rerr then return pack(nil, end_err(s)) end
  end)
end

---Reads exactly `n` bytes. On EOF or error before that: nil, err, partial (the partial bytes are consumed).
---On timeout: nil, "timeout" (the bytes stay buffered).
---@param n integer
function Socket:read_exactly(n)
  check_self("luvrs.co sock:read_exactly", self)
  if math.type(n) ~= "integer" or n < 0 then
    argerr("luvrs.co sock:read_exactly", "n", "a non-negative integer", n)
  end
  return read_op(self, "luvrs.co sock:read_exactly", function(s)
    if s.size >= n then return pack(take(s, n)) end
    if s.eof or s.rerr then return pack(nil, end_err(s), take(s, s.size)) end
  end)
end

---Reads up to `delimiter`, which is consumed and not returned (unless opts.inclusive). The delimiter
---may arrive split across packets. opts.max limits the bytes searched: past it, nil, "EMSGSIZE" (nothing
---is consumed). On EOF first: nil, "closed", partial.
---@param delimiter string
---@param opts? {max: integer?, inclusive: boolean?}
function Socket:read_until(delimiter, opts)
  local fname = "luvrs.co sock:read_until"
  check_self(fname, self)
  if type(delimiter) ~= "string" or delimiter == "" then argerr(fname, "delimiter", "a non-empty string", delimiter) end
  opts = check_opts(fname, opts)
  local max = opts.max
  if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
    argerr(fname, "opts.max", "a positive integer", max)
  end
  local inclusive = opts.inclusive
  local dl = #delimiter
  local from = 1
  return read_op(self, fname, function(s)
    if s.size > 0 then
      local b = collapse(s)
      local i = b:find(delimiter, from, true)
      if i then
        if max and i - 1 > max then return pack(nil, "EMSGSIZE") end
        local line = take(s, i - 1 + dl)
        if not inclusive then line = line:sub(1, i - 1) end
        return pack(line)
      end
      if max and #b >= max + dl then return pack(nil, "EMSGSIZE") end
      -- Resume the search where a delimiter split across packets could start.
      from = math.max(1, #b - dl + 2)
    end
    if s.eof or s.rerr then return pack(nil, end_err(s), take(s, s.size)) end
  end)
end

---Reads until the peer closes; returns everything (EOF is success here). opts.max: past it,
---nil, "EMSGSIZE". On error: nil, err, partial.
---@param opts? {max: integer?}
function Socket:read_all(opts)
  local fname = "luvrs.co sock:read_all"
  check_self(fname, self)
  opts = check_opts(fname, opts)
  local max = opts.max
  if max ~= nil and (math.type(max) ~= "integer" or max < 0) then
    argerr(fname, "opts.max", "a non-negative integer", max)
  end
  return read_op(self, fname, function(s)
    if max and s.size > max then return pack(nil, "EMSGSIZE") end
    if s.rerr then return pack(nil, s.rerr, take(s, s.size)) end
    if s.eof then return pack(take(s, s.size)) end
  end)
end

local function wake_writers(s)
  local waiting = s.wwait
  if #waiting == 0 then return end
  s.wwait = {}
  for _, op in ipairs(waiting) do
    local r = op.try(s)
    if r then finish(op, unpack(r, 1, r.n)) else s.wwait[#s.wwait + 1] = op end
  end
end

local function queue_size(s)
  if s.handle:is_closing() then return 0 end
  return s.handle:get_write_queue_size()
end

-- Waits (send timeout) until `try(s)` can answer; close() and write completions re-run it.
local function wait_send(s, op, try)
  op.try = try
  s.wwait[#s.wwait + 1] = op
  local ms = s.timeouts.send
  local timer
  if ms > 0 then timer = new_timer(ms, function() finish(op, nil, "timeout") end) end
  op.cleanup = function()
    for i = #s.wwait, 1, -1 do
      if s.wwait[i] == op then table.remove(s.wwait, i) end
    end
    close_handle(timer)
  end
  return await(op)
end

local function write_op(s, fname, try)
  local op = new_op(fname, 3)
  local r = try(s)
  if r then return unpack(r, 1, r.n) end
  return wait_send(s, op, try)
end

local function check_data(fname, data)
  local t = type(data)
  if t == "string" then return end
  if t ~= "table" then argerr(fname, "data", "a string or an array of strings", data) end
  for i = 1, #data do
    if type(data[i]) ~= "string" then
      error(("%s: argument 'data' must be a string or an array of strings (item %d is a %s)"):format(
        fname, i, type(data[i])), 3)
    end
  end
end

---Queues `data` (a string or an array of strings); returns true once what is queued on the socket is
---under co.HIGH_WATER bytes (waiting for the peer to read if needed), or nil, err.
---@param data string|string[]
---@return true|nil, string?
function Socket:write(data)
  local fname = "luvrs.co sock:write"
  check_self(fname, self)
  check_data(fname, data)
  new_op(fname)
  if self.closed then return nil, "closed" end
  if self.werr then return nil, self.werr end
  if type(data) == "table" and #data == 0 then return true end -- libuv asserts on a write of no buffers
  local s = self
  local req, err, name = self.handle:write(data, function(werr)
    s.inflight = s.inflight - 1
    if werr and not s.werr then s.werr = errname(werr) end
    wake_writers(s)
  end)
  if not req then
    self.werr = errname(err, name)
    return nil, self.werr
  end
  self.inflight = self.inflight + 1
  return write_op(self, fname, function(q)
    if q.closed then return pack(nil, "closed") end
    if q.werr then return pack(nil, q.werr) end
    if queue_size(q) <= co.HIGH_WATER then return pack(true) end
  end)
end

---Waits until everything written so far has been handed to the kernel; true or nil, err.
---@return true|nil, string?
function Socket:flush()
  local fname = "luvrs.co sock:flush"
  check_self(fname, self)
  new_op(fname)
  return write_op(self, fname, function(q)
    if q.werr then return pack(nil, q.werr) end
    if q.closed then return pack(nil, "closed") end
    if q.inflight == 0 then return pack(true) end
  end)
end

---Sends what is queued, then half-closes the sending side (the peer reads EOF); reading still works.
---@return true|nil, string?
function Socket:shutdown()
  local fname = "luvrs.co sock:shutdown"
  check_self(fname, self)
  local ok, err = self:flush()
  if not ok then return nil, err end
  local op = new_op(fname)
  local result
  local req, serr, name = self.handle:shutdown(function(e)
    result = e and pack(nil, errname(e)) or pack(true)
    wake_writers(self)
  end)
  if not req then return nil, errname(serr, name) end
  return wait_send(self, op, function(q)
    if result then return result end
    if q.closed then return pack(nil, "closed") end
  end)
end

---Closes the socket at once (queued writes not yet sent are dropped: call flush() first to keep them).
---Coroutines waiting on it get nil, "closed". Returns true, or nil, "closed" if it was already closed.
---@return true|nil, string?
function Socket:close()
  check_self("luvrs.co sock:close", self)
  if self.closed then return nil, "closed" end
  self.closed = true
  if self.pool then self.pool:_forget(self) end
  disown(self)
  local reader = self.reader
  if reader then
    self.reader = nil
    finish(reader, nil, "closed")
  end
  wake_writers(self)
  self.reading = false
  close_handle(self.handle)
  close_handle(self.rtimer)
  self.parts, self.size = {}, 0
  return true
end

---Sets timeouts in milliseconds (0: none) for connecting, each send wait and each read wait; nil keeps
---the current value. With exactly one argument it sets all three.
---@param connect? integer
---@param send? integer
---@param read? integer
function Socket:settimeout(...)
  local fname = "luvrs.co sock:settimeout"
  check_self(fname, self)
  local connect, send, read = ...
  if select("#", ...) == 1 then send, read = connect, connect end
  check_ms(fname, "connect", connect, true)
  check_ms(fname, "send", send, true)
  check_ms(fname, "read", read, true)
  local t = self.timeouts
  if connect then t.connect = connect end
  if send then t.send = send end
  if read then t.read = read end
  return true
end

---Bytes received and not yet consumed by a read.
---@return integer
function Socket:buffered() return self.size end

---The peer's address table ({ip, port, family}) for TCP, as luv's getpeername returns it.
function Socket:getpeername()
  check_self("luvrs.co sock:getpeername", self)
  if self.closed then return nil, "closed" end
  if not self.handle.getpeername then return nil, "ENOTSUP" end
  local r, err, name = self.handle:getpeername()
  if not r then return nil, errname(err, name) end
  return r
end

---Our own address table for TCP.
function Socket:getsockname()
  check_self("luvrs.co sock:getsockname", self)
  if self.closed then return nil, "closed" end
  local r, err, name = self.handle:getsockname()
  if not r then return nil, errname(err, name) end
  return r
end

---True when the socket can serve another exchange: open, no EOF or error seen, nothing unread.
function Socket:reusable()
  return not self.closed and not self.eof and not self.rerr and not self.werr and self.size == 0
    and self.reader == nil
end

-- Pool support (luvrs.co.pool): while idle the handle is unreferenced (it does not keep the loop
-- alive), keeps reading so that a peer close is noticed, and `on_idle` hears about any event.
function Socket:_idle(ms, on_idle)
  disown(self)
  self.on_idle = on_idle
  self.handle:unref()
  start_reading(self)
  if ms > 0 then
    local t = timer_of(self, "rtimer")
    t:unref()
    t:start(ms, 0, function() on_idle(self, "timeout") end)
  end
end

function Socket:_unidle()
  self.on_idle = nil
  self.pool = nil
  self.handle:ref()
  if self.rtimer then
    self.rtimer:stop()
    self.rtimer:ref()
  end
  own(self)
end

local function new_socket(handle, key, thread)
  local d = co.DEFAULT_TIMEOUTS
  local s = setmetatable({
    handle = handle,
    key = key,
    parts = {},
    size = 0,
    eof = false,
    closed = false,
    reading = false,
    inflight = 0,
    wwait = {},
    timeouts = { connect = d.connect, send = d.send, read = d.read },
  }, Socket)
  own(s, thread)
  start_reading(s)
  return s
end
co._new_socket = new_socket

---Puts the socket into a keep-alive pool (default: luvrs.co.pool.default) for reuse by a later
---connect to the same host:port; it is closed instead if it is not reusable. Returns true or nil, err.
---@param pool? table
function Socket:setkeepalive(pool)
  check_self("luvrs.co sock:setkeepalive", self)
  pool = pool or require("luvrs.co.pool").default
  return pool:put(self.key, self)
end

---------------------------------------------------------------------------------------------------
-- Connecting

local function is_ipv4(h)
  local a, b, c, d = h:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, x in ipairs({ a, b, c, d }) do
    if #x > 3 or tonumber(x) > 255 then return false end
  end
  return true
end

local function is_ipv6(h) return h:find(":", 1, true) ~= nil and h:match("^[%x:.%%%w]+$") ~= nil end

-- The pool key of a connection: sockets carry it, luvrs.co.pool files them under it.
local function tcp_key(host, port)
  local bare = host:match("^%[(.*)%]$") or host
  if is_ipv6(bare) then return "[" .. bare .. "]:" .. port end
  return bare:lower() .. ":" .. port
end
co._tcp_key = tcp_key

local function unix_key(path) return "unix:" .. path end
co._unix_key = unix_key

local function check_port(fname, port)
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    argerr(fname, "port", "an integer from 1 to 65535", port)
  end
end

-- Connects `handle` to each address in turn. `attempt(handle, addr, cb)` starts one connect.
local function connect_op(fname, opts, resolve, make_handle, attempt, key)
  local op = new_op(fname, 3)
  local timeout = opts.timeout or co.DEFAULT_TIMEOUTS.connect
  local handle, gai_req, timer
  local attempt_id = 0
  op.cleanup = function()
    close_handle(timer)
    if gai_req then pcall(U().cancel, gai_req) end
    close_handle(handle)
  end
  local last_err = "EADDRNOTAVAIL"
  local function try(addrs, i)
    if op.done then return end
    local addr = addrs[i]
    if not addr then return finish(op, nil, last_err) end
    attempt_id = attempt_id + 1
    local my = attempt_id
    close_handle(handle)
    handle = make_handle()
    local ok, req, err, name = pcall(attempt, handle, addr, function(cerr)
      if op.done or my ~= attempt_id then return end
      if cerr then
        last_err = errname(cerr)
        return try(addrs, i + 1)
      end
      local h = handle
      handle = nil -- handed to the socket: cleanup must not close it
      local s = new_socket(h, key, op.thread)
      s.timeouts.connect = timeout
      finish(op, s)
    end)
    if not ok then
      last_err = "EINVAL"
      return try(addrs, i + 1)
    elseif not req then
      last_err = errname(err, name)
      return try(addrs, i + 1)
    end
  end
  if timeout > 0 then timer = new_timer(timeout, function() finish(op, nil, "timeout") end) end
  resolve(function(addrs, err)
    gai_req = nil
    if op.done then return end
    if not addrs then return finish(op, nil, err) end
    try(addrs, 1)
  end, function(req) gai_req = req end)
  return await(op)
end

---Connects to `host` (an IP address or a name, resolved without blocking) on `port`. Every address the
---name resolves to is tried in order within the connect timeout. Returns a socket, or nil, err.
---@param host string
---@param port integer
---@param opts? {timeout: integer?, nodelay: boolean?} timeout in ms for resolving + connecting
---@return luvrs.co.Socket|nil, string?
function co.tcp_connect(host, port, opts)
  local fname = "luvrs.co.tcp_connect"
  if type(host) ~= "string" or host == "" then argerr(fname, "host", "a non-empty string", host) end
  check_port(fname, port)
  opts = check_opts(fname, opts)
  check_ms(fname, "opts.timeout", opts.timeout, true)
  local loop = U()
  local bare = host:match("^%[(.*)%]$") or host
  local literal = is_ipv4(bare) or is_ipv6(bare)
  if not literal and not loop.getaddrinfo then return nil, "ENOSYS" end
  local function resolve(done, set_req)
    if literal then return done({ bare }) end
    local req, err, name = loop.getaddrinfo(bare, nil, { socktype = "stream" }, function(gerr, res)
      if gerr then return done(nil, errname(gerr)) end
      local addrs, seen = {}, {}
      for _, a in ipairs(res or {}) do
        if not seen[a.addr] then
          seen[a.addr] = true
          addrs[#addrs + 1] = a.addr
        end
      end
      done(addrs)
    end)
    if not req then return done(nil, errname(err, name)) end
    set_req(req)
  end
  local nodelay = opts.nodelay ~= false
  local s, err = connect_op(fname, opts, resolve, function() return loop.new_tcp() end, function(h, addr, cb)
    return h:connect(addr, port, cb)
  end, tcp_key(bare, port))
  if s and nodelay then s.handle:nodelay(true) end
  return s, err
end

---Connects to the Unix domain socket at `path`. Returns a socket, or nil, err.
---@param path string
---@param opts? {timeout: integer?}
---@return luvrs.co.Socket|nil, string?
function co.unix_connect(path, opts)
  local fname = "luvrs.co.unix_connect"
  if type(path) ~= "string" or path == "" then argerr(fname, "path", "a non-empty string", path) end
  opts = check_opts(fname, opts)
  check_ms(fname, "opts.timeout", opts.timeout, true)
  local loop = U()
  if not loop.new_pipe then return nil, "ENOSYS" end
  return connect_op(fname, opts, function(done) done({ path }) end, function() return loop.new_pipe(false) end,
    function(h, addr, cb) return h:connect(addr, cb) end, unix_key(path))
end

---------------------------------------------------------------------------------------------------
-- Listening

---@class luvrs.co.Server
local Server = {}
Server.__index = Server
Server.__name = "luvrs.co.server"
Server.__close = function(self) self:close() end

---Stops accepting connections. Connections already accepted go on, unless `abort` is true: then their
---handler tasks are cancelled (and their sockets closed). True, or nil, "closed".
---@param abort? boolean
function Server:close(abort)
  if self.closed then return nil, "closed" end
  self.closed = true
  close_handle(self.handle)
  if abort then
    for t in pairs(self.tasks) do
      if t.state == "running" then t:cancel() end
    end
  end
  return true
end

---The listening address ({ip, port, family}; for Unix sockets the path).
function Server:getsockname()
  if self.path then return self.path end
  return self.handle:getsockname()
end

local function serve(server, handler, make_client, backlog)
  local ok, err, name = server.handle:listen(backlog, function(lerr)
    if lerr or server.closed then return end
    local client = make_client()
    local aok = server.handle:accept(client)
    if not aok then
      client:close()
      return
    end
    local task = co.spawn(function()
      local s = new_socket(client, nil)
      local hok, herr = xpcall(handler, traceback, s)
      if not s.closed then
        if hok then s:flush() end
        s:close()
      end
      if not hok then pcall(error_handler, herr, co.current()) end
    end)
    server.tasks[task] = true
    task.on_done[#task.on_done + 1] = function(t) server.tasks[t] = nil end
  end)
  if not ok then
    close_handle(server.handle)
    return nil, errname(err, name)
  end
  return server
end

local function check_listen(fname, handler, opts)
  if not callable(handler) then argerr(fname, "handler", "a function", handler) end
  opts = check_opts(fname, opts)
  if opts.backlog ~= nil and (math.type(opts.backlog) ~= "integer" or opts.backlog < 1) then
    argerr(fname, "opts.backlog", "a positive integer", opts.backlog)
  end
  return opts
end

---Listens on `host` (an IP address; a name is resolved once, blocking) and `port` (0: any free port).
---Each connection runs `handler(sock)` in its own task; the socket is flushed and closed when the
---handler returns, and closed when it raises. Returns a server object, or nil, err.
---@param host string
---@param port integer
---@param handler fun(sock: luvrs.co.Socket)
---@param opts? {backlog: integer?, reuseport: boolean?}
---@return luvrs.co.Server|nil, string?
function co.tcp_listen(host, port, handler, opts)
  local fname = "luvrs.co.tcp_listen"
  if type(host) ~= "string" or host == "" then argerr(fname, "host", "a non-empty string", host) end
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    argerr(fname, "port", "an integer from 0 to 65535", port)
  end
  opts = check_listen(fname, handler, opts)
  local loop = U()
  local addr = host:match("^%[(.*)%]$") or host
  if not is_ipv4(addr) and not is_ipv6(addr) then
    local res, err, name = loop.getaddrinfo(addr, nil, { socktype = "stream" })
    if not res or not res[1] then return nil, errname(err or "EAI_NONAME", name) end
    addr = res[1].addr
  end
  local h = loop.new_tcp()
  local flags = opts.reuseport and { reuseport = true } or nil
  local ok, err, name = h:bind(addr, port, flags)
  if not ok then
    h:close()
    return nil, errname(err, name)
  end
  local server = setmetatable({ handle = h, closed = false, tasks = setmetatable({}, { __mode = "k" }) }, Server)
  local sn = h:getsockname()
  server.port = sn and sn.port
  server.host = sn and sn.ip
  return serve(server, handler, function() return loop.new_tcp() end, opts.backlog or 511)
end

---Listens on the Unix domain socket `path` (which must not exist); like co.tcp_listen.
---@param path string
---@param handler fun(sock: luvrs.co.Socket)
---@param opts? {backlog: integer?}
---@return luvrs.co.Server|nil, string?
function co.unix_listen(path, handler, opts)
  local fname = "luvrs.co.unix_listen"
  if type(path) ~= "string" or path == "" then argerr(fname, "path", "a non-empty string", path) end
  opts = check_listen(fname, handler, opts)
  local loop = U()
  if not loop.new_pipe then return nil, "ENOSYS" end
  local h = loop.new_pipe(false)
  local ok, err, name = h:bind(path)
  if not ok then
    h:close()
    return nil, errname(err, name)
  end
  local server = setmetatable({ handle = h, closed = false, path = path, tasks = setmetatable({}, { __mode = "k" }) },
    Server)
  return serve(server, handler, function() return loop.new_pipe(false) end, opts.backlog or 511)
end

return co
