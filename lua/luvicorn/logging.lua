--- Luvicorn's logger: Uvicorn's line shape (`INFO:     message`), levels, and the access log
--- (`127.0.0.1:51234 - "GET / HTTP/1.1" 200 OK 0.21ms`).
---@class luvicorn.logging
local M = {}

local format, type, tostring = string.format, type, tostring

M.LEVELS = { critical = 50, error = 40, warning = 30, info = 20, debug = 10, trace = 5 }

local Logger = {}
Logger.__index = Logger
Logger.__name = "luvicorn.Logger"

local PREFIX = {
  critical = "CRITICAL: ", error = "ERROR:    ", warning = "WARNING:  ",
  info = "INFO:     ", debug = "DEBUG:    ", trace = "TRACE:    ",
}

---Creates a logger.
---@param opts? { level?: string, access_log?: boolean, err?: file*, out?: file* }
---@return table logger
function M.new(opts)
  opts = opts or {}
  local level = opts.level or "info"
  if not M.LEVELS[level] then
    error("luvicorn.logging.new: argument 'level' must be one of critical, error, warning, info, debug, trace, got "
      .. tostring(level), 2)
  end
  local self = setmetatable({
    level = M.LEVELS[level],
    err = opts.err or io.stderr,
    out = opts.out or io.stdout,
  }, Logger)
  -- The access log goes to stdout, fully buffered: a line-buffered write per request is a syscall per
  -- request. The server flushes it a few times a second (Logger:flush).
  self.access_enabled = opts.access_log ~= false and self.level <= M.LEVELS.info
  return self
end

---Writes `msg` at `level` (one of M.LEVELS).
---@param level string
---@param msg string
function Logger:log(level, msg)
  local n = M.LEVELS[level]
  if not n then error("luvicorn.Logger:log: argument 'level' is not a level: " .. tostring(level), 2) end
  if n < self.level then return end
  self.err:write(PREFIX[level], msg, "\n")
  self.err:flush()
end

function Logger:critical(msg) self:log("critical", msg) end
function Logger:error(msg) self:log("error", msg) end
function Logger:warning(msg) self:log("warning", msg) end
function Logger:info(msg) self:log("info", msg) end
function Logger:debug(msg) self:log("debug", msg) end
function Logger:trace(msg) self:log("trace", msg) end

---True when messages at `level` are written.
---@param level string
---@return boolean
function Logger:enabled(level)
  return (M.LEVELS[level] or 0) >= self.level
end

---The client part of an access-log line: "host:port", the path of a Unix socket, or "-".
---@param client table|nil `{ host, port }`
---@return string
function M.client_str(client)
  if not client then return "-" end
  if client[2] then return format("%s:%d", client[1], client[2]) end
  return tostring(client[1])
end

local ACCESS = '%s - "%s %s HTTP/%s" %d %s %.2fms'
local ACCESS_LINE = "INFO:     " .. ACCESS .. "\n"

---Formats one access-log line (without the level prefix and newline).
---@param client table|nil `{ host, port }`
---@param method string
---@param target string
---@param http_version string
---@param status integer
---@param reason string
---@param ms number response time in milliseconds
---@return string
function M.access_line(client, method, target, http_version, status, reason, ms)
  return format(ACCESS, M.client_str(client), method, target, http_version, status, reason, ms)
end

---Writes an access-log line. `client` is a table as in the scope, or a string from M.client_str (the
---server passes the string it keeps per connection: one format per request instead of two).
function Logger:access(client, method, target, http_version, status, reason, ms)
  if not self.access_enabled then return end
  if type(client) ~= "string" then client = M.client_str(client) end
  self.out:write(format(ACCESS_LINE, client, method, target, http_version, status, reason, ms))
end

---Flushes buffered access-log lines.
function Logger:flush()
  self.out:flush()
end

return M
