-- Lifespan: startup and shutdown code for a LASGI app, and the app-wide `state` table.
--
-- Either lists of hooks (on_startup / on_shutdown, each called with `state`), or one function
-- `lifespan(app, state, yield)`: the code before `yield()` runs at startup, the code after it at shutdown.
-- Values stored in `state` at startup reach every request as `scope.state` (a shallow copy made by the
-- server), i.e. `request.state`.
local M = {}

local function run_hooks(list, state)
  for _, fn in ipairs(list or {}) do fn(state) end
end

---Speaks the lifespan protocol on a "lifespan" scope. opts: on_startup, on_shutdown, lifespan, app.
---@param scope table
---@param receive function
---@param send function
---@param opts table
function M.run(scope, receive, send, opts)
  if opts.lifespan and (opts.on_startup or opts.on_shutdown) then
    error("lifespan.run: use either 'lifespan' or 'on_startup'/'on_shutdown', not both", 2)
  end
  local state = scope.state
  if state == nil then state = {}; scope.state = state end
  local ev = receive()
  if ev.type ~= "lifespan.startup" then error("lifespan: expected lifespan.startup, got " .. tostring(ev.type), 0) end
  local started = false
  local function yield()
    if started then error("lifespan: yield() called twice", 2) end
    started = true
    send({ type = "lifespan.startup.complete" })
    while true do
      local e = receive()
      if e.type == "lifespan.shutdown" then return end
    end
  end
  local ok, err
  if opts.lifespan then
    ok, err = xpcall(opts.lifespan, debug.traceback, opts.app or scope.app, state, yield)
    if ok and not started then yield() end
  else
    ok, err = xpcall(run_hooks, debug.traceback, opts.on_startup, state)
    if ok then
      yield()
      ok, err = xpcall(run_hooks, debug.traceback, opts.on_shutdown, state)
    end
  end
  if not ok then
    send({ type = started and "lifespan.shutdown.failed" or "lifespan.startup.failed", message = tostring(err) })
    return
  end
  send({ type = "lifespan.shutdown.complete" })
end

---Wraps any LASGI app so that it handles lifespan with these hooks; other scopes go to `app`.
---@param app function|table
---@param opts table on_startup, on_shutdown, lifespan
---@return function
function M.wrap(app, opts)
  if type(opts) ~= "table" then error("lifespan.wrap: argument 'opts' must be a table", 2) end
  return function(scope, receive, send)
    if scope.type == "lifespan" then
      return M.run(scope, receive, send, { on_startup = opts.on_startup, on_shutdown = opts.on_shutdown,
                                           lifespan = opts.lifespan, app = app })
    end
    return app(scope, receive, send)
  end
end

return M
