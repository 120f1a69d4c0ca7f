--- The worker's side of supervision: a worker process is started by luvicorn.supervisor with its
--- listening sockets and one end of a socketpair as inherited descriptors. Over the socketpair the worker
--- says, one word per line: `ready` (serving), `hb` (heartbeat, from the event loop: a worker stuck in
--- app code stops sending them) and `retire` (its request limit is reached; replace it). End of file on
--- the socketpair means the supervisor is gone: the worker shuts down gracefully.
---@class luvicorn.worker
local M = {}

---Entry point of a worker process (the supervisor runs `lua5.4 -e` with a call to this).
---`opts`: `argv` (the supervisor's command line), `ipc_fd`, `listeners` (specs for luvicorn.binds),
---`heartbeat_ms`.
---@param opts table
---@return integer exit_code
function M.main(opts)
  if type(opts) ~= "table" or type(opts.argv) ~= "table" then
    error("luvicorn.worker.main: argument 'opts' must be a table with 'argv'", 2)
  end
  return require("luvicorn.cli").main(opts.argv, opts)
end

local Link = {}
Link.__index = Link

---Connects a server to its supervisor; returns the link or nil and an error.
---@param server table luvicorn.server Server (its `uv` and `log` set)
---@param opts table the worker options given to M.main
---@return table|nil link
---@return string|nil err
function M.link(server, opts)
  local uv = server.uv
  local pipe = uv.new_pipe(false)
  local ok, err = pipe:open(opts.ipc_fd)
  if not ok then
    pipe:close()
    return nil, ("cannot open the supervisor's descriptor %s: %s"):format(tostring(opts.ipc_fd), tostring(err))
  end
  local self = setmetatable({ pipe = pipe, uv = uv }, Link)
  pipe:read_start(function(rerr, data)
    if data then return end
    -- end of file (or a reset): the supervisor died without stopping us
    pipe:read_stop()
    self.gone = true
    server.log:warning("Supervisor gone (" .. tostring(rerr or "end of file") .. "): shutting down")
    server:begin_shutdown()
  end)
  -- luv does not ignore SIGPIPE: a write to a dead supervisor must fail, not kill the worker
  if uv.new_signal and require("luvicorn.loop_choice").name ~= "luvrs" then
    self.sigpipe = uv.new_signal()
    self.sigpipe:start("sigpipe", function() end)
    self.sigpipe:unref()
  end
  local every = opts.heartbeat_ms or 1000
  self.timer = uv.new_timer()
  self.timer:start(0, every, function() self:send("hb") end)
  self.timer:unref()
  return self
end

---Sends one word to the supervisor.
---@param word string
function Link:send(word)
  if self.gone or self.pipe:is_closing() then return end
  local ok = self.pipe:write(word .. "\n")
  if not ok then self.gone = true end
end

function Link:close()
  for _, h in ipairs({ self.timer, self.sigpipe, self.pipe }) do
    if h and not h:is_closing() then h:close() end
  end
end

return M
