--- Luvicorn's logger: Uvicorn's line shape (`INFO:     message`), levels, the access log
--- (`127.0.0.1:51234 - "GET / HTTP/1.1" 200 OK 0.21ms`, or a format with nginx-style `$fields`),
--- `--log-config` files, and reopening log files for logrotate.
---
--- Whole lines with several processes: workers share stdout, stderr and the log files, so every line
--- must reach the file in one write(2), never split. Access lines are collected in a Lua table (no call
--- into C per request) and leave as one write when the next line would push the batch over PIPE_BUF
--- (4096 bytes: the kernel keeps a pipe write up to that size in one piece; a regular file opened in
--- append mode gets every write(2) placed whole at its end), or when the server flushes a few times a
--- second. The files the logger writes are unbuffered in C (`setvbuf("no")`), so that one `f:write(s)`
--- is one write(2) of all of `s`; a C buffer would cut a batch wherever it fills. Error lines are one
--- write each; a message longer than PIPE_BUF (a traceback) is cut only between lines.
---@class luvicorn.logging
local M = {}

local format, type, tostring, concat, find, sub, gsub, byte =
  string.format, type, tostring, table.concat, string.find, string.sub, string.gsub, string.byte

M.LEVELS = { critical = 50, error = 40, warning = 30, info = 20, debug = 10, trace = 5 }

M.PIPE_BUF = 4096

local PIPE_BUF = M.PIPE_BUF

local Logger = {}
Logger.__index = Logger
Logger.__name = "luvicorn.Logger"

local PREFIX = {
  critical = "CRITICAL: ", error = "ERROR:    ", warning = "WARNING:  ",
  info = "INFO:     ", debug = "DEBUG:    ", trace = "TRACE:    ",
}

---------------------------------------------------------------------------------------------------
-- Writing whole lines

-- Writes `s` (whole lines) to `f`: in one write when it fits PIPE_BUF, else in pieces cut after a
-- newline, each at most PIPE_BUF unless a single line is longer. The flush is for a stream that buffers
-- (a sink given to M.new); on the unbuffered files it costs no system call.
local function write_whole(f, s)
  local len = #s
  if len <= PIPE_BUF then
    f:write(s)
  else
    local first = 1
    while first <= len do
      local last = first + PIPE_BUF - 1
      if last >= len then
        last = len
      else
        -- the last newline within the piece; none: the line is longer than PIPE_BUF, cut after it
        local nl = last
        while nl >= first and byte(s, nl) ~= 10 do nl = nl - 1 end
        if nl >= first then
          last = nl
        else
          last = find(s, "\n", last + 1, true) or len
        end
      end
      f:write(sub(s, first, last))
      first = last + 1
    end
  end
  f:flush()
end

-- "stdout" / "stderr" name the process's streams; anything else is a path, opened for appending.
local function open_target(target)
  if target == "stdout" then return io.stdout end
  if target == "stderr" then return io.stderr end
  local f, err = io.open(target, "a")
  if not f then return nil, err end
  f:setvbuf("no")
  return f
end

local function is_path(target)
  return type(target) == "string" and target ~= "stdout" and target ~= "stderr"
end

---------------------------------------------------------------------------------------------------
-- Access-log formats: `$name` / `${name}` fields, compiled once into a Lua function.

-- The values taken from the request are escaped as nginx does (`"`, `\`, control and non-ASCII bytes
-- as \xHH), so that a client cannot forge a line or break a parser's quoting.
local UNSAFE = "[%z\1-\31\"\\\127-\255]"
local function escape_byte(c) return format("\\x%02X", byte(c)) end

local function esc(v)
  if v == nil or v == "" then return "-" end
  if find(v, UNSAFE) then v = gsub(v, UNSAFE, escape_byte) end
  return v
end

local function dash(v)
  if v == nil or v == "" then return "-" end
  return v
end

-- The value of request header `name` (lower case); repeated fields are joined with ", ".
local function header(scope, name)
  local headers = scope and scope.headers
  if not headers then return "-" end
  local found
  for i = 1, #headers do
    local h = headers[i]
    if h[1] == name then found = found and (found .. ", " .. h[2]) or h[2] end
  end
  return esc(found)
end

local function target_path(target)
  local q = find(target, "?", 1, true)
  return esc(q and sub(target, 1, q - 1) or target)
end

local function target_query(target)
  local q = find(target, "?", 1, true)
  return esc(q and sub(target, q + 1) or nil)
end

local function client_addr(client, scope)
  local c = scope and scope.client
  if c and c[1] ~= nil then return esc(tostring(c[1])) end
  if scope or client == "-" then return "-" end
  -- no scope: what the "host:port" string gives
  return esc(client:match("^(.*):%d+$") or client)
end

local pid_value
local function pid()
  if not pid_value then
    local lc = package.loaded["luvicorn.loop_choice"]
    local uv = lc and lc.current
    if uv and uv.os_getpid then
      pid_value = tostring(math.tointeger(uv.os_getpid()) or uv.os_getpid())
    else
      local f = io.open("/proc/self/stat", "r")
      local n = f and f:read("n")
      if f then f:close() end
      pid_value = n and tostring(math.tointeger(n)) or "-"
    end
  end
  return pid_value
end

-- Times are formatted once per second.
local local_sec, local_str, iso_sec, iso_str = -1, "", -1, ""
local function time_local()
  local t = os.time()
  if t ~= local_sec then
    local_sec, local_str = t, os.date("%d/%b/%Y:%H:%M:%S %z", t)
  end
  return local_str
end

local function time_iso8601()
  local t = os.time()
  if t ~= iso_sec then
    local s = os.date("%Y-%m-%dT%H:%M:%S%z", t) --[[@as string]]
    iso_sec, iso_str = t, sub(s, 1, -3) .. ":" .. sub(s, -2)
  end
  return iso_str
end

-- Each field is a Lua expression over the formatter's arguments:
-- c client string, m method, t raw target, v HTTP version ("1.1"), st status, r reason, ms duration,
-- s scope (or nil), b response body bytes (or nil).
local FIELDS = {
  client = "E(c)",
  client_addr = "F.client_addr(c, s)",
  request_line = 'm .. " " .. E(t) .. " HTTP/" .. v',
  method = "m",
  target = "E(t)",
  path = "F.path(t)",
  query = "F.query(t)",
  protocol = '"HTTP/" .. v',
  status = "st",
  reason = "D(r)",
  bytes = "D(b)",
  duration_ms = 'format("%.2f", ms)',
  duration_s = 'format("%.6f", ms / 1000)',
  referer = 'H(s, "referer")',
  user_agent = 'H(s, "user-agent")',
  time_local = "F.time_local()",
  time_iso8601 = "F.time_iso8601()",
  pid = "F.pid()",
}
M.FIELDS = {}
for name in pairs(FIELDS) do M.FIELDS[#M.FIELDS + 1] = name end
table.sort(M.FIELDS)

local HELPERS = {
  client_addr = client_addr, path = target_path, query = target_query,
  time_local = time_local, time_iso8601 = time_iso8601, pid = pid,
}

local function field_expr(name)
  local expr = FIELDS[name]
  if expr then return expr end
  local h = name:match("^http_(.+)$")
  if h then return format("H(s, %q)", (h:lower():gsub("_", "-"))) end
  return nil
end

---Compiles an access-log format into a function
---`(client, method, target, http_version, status, reason, ms, scope, bytes) -> line` (no newline).
---`$name` or `${name}` is a field (see M.FIELDS, plus `$http_<header>`), `$$` a literal `$`.
---@param fmt string
---@return function|nil formatter
---@return string|nil err naming the bad field
function M.compile_access_format(fmt)
  if type(fmt) ~= "string" then return nil, "the format must be a string, got " .. type(fmt) end
  local parts, literal = {}, {}
  local function push_literal()
    if #literal > 0 then
      parts[#parts + 1] = format("%q", concat(literal))
      literal = {}
    end
  end
  local i, len = 1, #fmt
  while i <= len do
    local d = find(fmt, "$", i, true)
    if not d then
      literal[#literal + 1] = sub(fmt, i)
      break
    end
    literal[#literal + 1] = sub(fmt, i, d - 1)
    local name, after
    if sub(fmt, d + 1, d + 1) == "$" then
      literal[#literal + 1] = "$"
      i = d + 2
    else
      if sub(fmt, d + 1, d + 1) == "{" then
        local close = find(fmt, "}", d + 2, true)
        if not close then return nil, format("unclosed ${ at position %d", d) end
        name, after = sub(fmt, d + 2, close - 1), close + 1
        if not find(name, "^[%w_]+$") then return nil, format("invalid field name ${%s}", name) end
      else
        local s, e = find(fmt, "^[%w_]+", d + 1)
        if not s then
          return nil, format("a '$' without a field name at position %d (write $$ for a literal $)", d)
        end
        name, after = sub(fmt, s, e), e + 1
      end
      local expr = field_expr(name)
      if not expr then
        return nil, format("unknown field $%s (known: $%s, $http_<header>)", name, concat(M.FIELDS, ", $"))
      end
      push_literal()
      parts[#parts + 1] = "(" .. expr .. ")"
      i = after
    end
  end
  push_literal()
  local body
  if #parts == 0 then
    body = '""'
  else
    -- a concatenation uses one register per operand: groups keep a long format within Lua's limits
    local groups = {}
    for g = 1, #parts, 40 do groups[#groups + 1] = "(" .. concat(parts, " .. ", g, math.min(g + 39, #parts)) .. ")" end
    body = concat(groups, " .. ")
  end
  local src = "local F, E, H, D, format = ...\n"
    .. "return function(c, m, t, v, st, r, ms, s, b) return " .. body .. " end"
  local chunk, err = load(src, "=access-log-format", "t", {})
  if not chunk then return nil, "cannot compile the format: " .. tostring(err) end
  return chunk(HELPERS, esc, header, dash, format)
end

---------------------------------------------------------------------------------------------------
-- The logger

---Creates a logger.
---@param opts? { level?: string, access_log?: boolean, access_log_format?: string, err?: file*, out?: file*,
---  error_log?: string, access_path?: string }
---`err` / `out` are the streams (default stderr / stdout); `error_log` / `access_path` name the files
---they were opened from, for Logger:reopen.
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
    err_path = opts.error_log,
    out_path = opts.access_path,
    -- access lines waiting for the next write (see the module comment)
    buf = {}, n = 0, size = 0,
  }, Logger)
  self.access_enabled = opts.access_log ~= false and self.level <= M.LEVELS.info
  if opts.access_log_format ~= nil then
    local fn, err = M.compile_access_format(opts.access_log_format)
    if not fn then error("luvicorn.logging.new: argument 'access_log_format': " .. err, 2) end
    self.formatter = fn
    self.access = Logger.access_formatted -- an own field: the default line's path stays untouched
  end
  -- stdio buffers stdout: one write of ours could leave in two write(2) calls (see the module comment)
  if (self.out == io.stdout and self.access_enabled) or self.err == io.stdout then io.stdout:setvbuf("no") end
  return self
end

---Writes `msg` at `level` (one of M.LEVELS).
---@param level string
---@param msg string
function Logger:log(level, msg)
  local n = M.LEVELS[level]
  if not n then error("luvicorn.Logger:log: argument 'level' is not a level: " .. tostring(level), 2) end
  if n < self.level then return end
  write_whole(self.err, PREFIX[level] .. tostring(msg) .. "\n")
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

---Formats one default access-log line (without the level prefix and newline).
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
---server passes the string it keeps per connection: one format per request instead of two). `scope`
---and `bytes` (response body bytes sent) feed a custom format; the default line ignores them.
---@param client table|string|nil
---@param method string
---@param target string raw request target
---@param http_version string "1.0" / "1.1"
---@param status integer
---@param reason string
---@param ms number
---@param scope? table the request's scope (headers, client)
---@param bytes? integer
function Logger:access(client, method, target, http_version, status, reason, ms, scope, bytes) -- luacheck: ignore 212
  if not self.access_enabled then return end
  if type(client) ~= "string" then client = M.client_str(client) end
  local line = format(ACCESS_LINE, client, method, target, http_version, status, reason, ms)
  -- the batching below is written out here and in access_formatted: a shared function costs a call
  -- (about 240 instructions) per request
  local size = self.size + #line
  if size > PIPE_BUF and self.n > 0 then
    self:flush()
    size = #line
  end
  local n = self.n + 1
  self.buf[n] = line
  self.n, self.size = n, size
end

---Logger:access for a logger with a custom format (installed as the logger's own `access`).
function Logger:access_formatted(client, method, target, http_version, status, reason, ms, scope, bytes)
  if not self.access_enabled then return end
  if type(client) ~= "string" then client = M.client_str(client) end
  local line = self.formatter(client, method, target, http_version, status, reason, ms, scope, bytes) .. "\n"
  local size = self.size + #line
  if size > PIPE_BUF and self.n > 0 then
    self:flush()
    size = #line
  end
  local n = self.n + 1
  self.buf[n] = line
  self.n, self.size = n, size
end

---Writes the buffered access-log lines (one write; see the module comment).
function Logger:flush()
  local n = self.n
  if n == 0 then return end
  local buf = self.buf
  local s = n == 1 and buf[1] or concat(buf, "", 1, n)
  self.n, self.size = 0, 0
  write_whole(self.out, s)
end

-- Opens `path` again and swaps it in for the stream in `field`; the old one is closed.
local function reopen_one(self, field, path)
  local f, err = open_target(path)
  if not f then return nil, err end
  local old = self[field]
  self[field] = f
  if old ~= f and old ~= io.stdout and old ~= io.stderr and io.type(old) == "file" then old:close() end
  return true
end

---Reopens the log files (append mode) so that logrotate can move them away: lines written before the
---call go to the old file, later ones to a new file at the path. Streams (stdout, stderr) are left as
---they are. On failure the old file is kept and the error logged.
---@return boolean|nil ok
---@return string|nil err
function Logger:reopen()
  self:flush()
  local failed
  if self.out_path then
    local ok, err = reopen_one(self, "out", self.out_path)
    if not ok then failed = "cannot reopen the access log: " .. tostring(err) end
  end
  if self.err_path then
    local ok, err = reopen_one(self, "err", self.err_path)
    if not ok then failed = (failed and failed .. "; " or "") .. "cannot reopen the error log: " .. tostring(err) end
  end
  if failed then
    self:error(failed)
    return nil, failed
  end
  return true
end

---Closes the files the logger opened (after a flush); stdout and stderr stay open.
function Logger:close()
  self:flush()
  for _, field in ipairs({ "out", "err" }) do
    local f = self[field]
    if self[field .. "_path"] and io.type(f) == "file" then f:close() end
  end
end

---------------------------------------------------------------------------------------------------
-- --log-config

-- key -> check(value) returning an error message or nil
local CONFIG_KEYS = {
  level = function(v)
    if type(v) ~= "string" or not M.LEVELS[v] then
      return "must be one of critical, error, warning, info, debug, trace"
    end
  end,
  error_log = function(v)
    if type(v) ~= "string" or v == "" then return 'must be "stderr", "stdout" or a file path' end
  end,
  access_log = function(v)
    if v == false or v == true then return end
    if type(v) ~= "string" or v == "" then return 'must be "stdout", "stderr", a file path, or false' end
  end,
  access_log_format = function(v)
    if type(v) ~= "string" then return "must be a string" end
    local _, err = M.compile_access_format(v)
    return err
  end,
}
M.CONFIG_KEYS = {}
for k in pairs(CONFIG_KEYS) do M.CONFIG_KEYS[#M.CONFIG_KEYS + 1] = k end
table.sort(M.CONFIG_KEYS)

local function describe(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

---Reads a `--log-config` file: a Lua file returning a table, or a `.json` file (through lua-cjson).
---@param path string
---@return table|nil settings with only the known keys, checked
---@return string|nil err naming the file and the key
function M.read_config(path)
  if type(path) ~= "string" then error("luvicorn.logging.read_config: argument 'path' must be a string", 2) end
  local where = "--log-config " .. path
  local t
  if path:lower():match("%.json$") then
    local ok, cjson = pcall(require, "cjson")
    if not ok then
      return nil, where .. ": a JSON file needs lua-cjson (module 'cjson'), which cannot be loaded: "
        .. tostring(cjson):match("^[^\n]*") .. " (install lua-cjson, or write the file in Lua)"
    end
    local f, err = io.open(path, "r")
    if not f then return nil, where .. ": cannot read: " .. tostring(err) end
    local text = f:read("a")
    f:close()
    local dok, value = pcall(cjson.decode, text)
    if not dok then return nil, where .. ": invalid JSON: " .. tostring(value) end
    t = value
  else
    local chunk, err = loadfile(path, "t")
    if not chunk then return nil, where .. ": cannot load: " .. tostring(err) end
    local ok, value = pcall(chunk)
    if not ok then return nil, where .. ": error while running it: " .. tostring(value) end
    t = value
  end
  if type(t) ~= "table" then return nil, where .. ": must return a table, got " .. type(t) end
  local settings = {}
  for k, v in pairs(t) do
    local check = CONFIG_KEYS[k]
    if not check then
      return nil, format("%s: unknown key %s (known: %s)", where, describe(k), concat(M.CONFIG_KEYS, ", "))
    end
    local err = check(v)
    if err then return nil, format("%s: key '%s' %s, got %s", where, k, err, describe(v)) end
    settings[k] = v
  end
  return settings
end

---Builds the logger for a settings table from luvicorn.config (`log_level`, `access_log`,
---`access_log_format`, `log_config`). With a `log_config` file, its keys apply except where the command
---line or a LUVICORN_* variable set the option to something other than its default: `--log-level`
---(unless `info`), `--no-access-log`, `--access-log-format` win over the file.
---@param config table
---@return table|nil logger
---@return string|nil err (startup error: the server exits 3)
function M.from_config(config)
  if type(config) ~= "table" then error("luvicorn.logging.from_config: argument 'config' must be a table", 2) end
  local level = config.log_level or "info"
  local access_log = config.access_log ~= false
  local access_format = config.access_log_format
  local error_log, access_target = "stderr", "stdout"
  if config.log_config ~= nil then
    local file, err = M.read_config(config.log_config)
    if not file then return nil, err end
    local given = config.given or {}
    if file.level and not given.log_level then level = file.level end
    if file.error_log then error_log = file.error_log end
    if file.access_log == false then
      if not given.access_log then access_log = false end
    elseif type(file.access_log) == "string" then
      access_target = file.access_log
    end
    if access_format == nil then access_format = file.access_log_format end
  end
  if access_format ~= nil then
    local _, err = M.compile_access_format(access_format)
    if err then return nil, "--access-log-format: " .. err end
  end
  if not M.LEVELS[level] then return nil, "--log-level: not a level: " .. tostring(level) end
  local err_stream, out_stream, oerr
  err_stream, oerr = open_target(error_log)
  if not err_stream then return nil, format("cannot open the error log %s: %s", error_log, tostring(oerr)) end
  if access_log and M.LEVELS[level] <= M.LEVELS.info then
    out_stream, oerr = open_target(access_target)
    if not out_stream then
      if is_path(error_log) then err_stream:close() end
      return nil, format("cannot open the access log %s: %s", access_target, tostring(oerr))
    end
  end
  return M.new({
    level = level, access_log = access_log, access_log_format = access_format,
    err = err_stream, out = out_stream,
    error_log = is_path(error_log) and error_log or nil,
    access_path = out_stream and is_path(access_target) and access_target or nil,
  })
end

return M
