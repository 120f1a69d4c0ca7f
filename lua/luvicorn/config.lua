--- Luvicorn's settings: the options, their defaults, the command line, `LUVICORN_*` variables and
--- `--env-file`. Names and defaults follow Uvicorn where the meaning is the same.
---@class luvicorn.config
local M = {}

M.VERSION = "0.1.0"

-- kind: string | int | number | bool (with --no-NAME) | flag (no value) | choice | list | multi (NAME:VALUE,
-- repeatable) | strings (repeatable)
M.OPTIONS = {
  { "host", "string", "127.0.0.1", "Bind socket to this host (repeatable: one socket per host, same port)." },
  { "port", "int", 8000, "Bind socket to this port. 0 picks a free port and logs it." },
  { "bind", "strings", nil, "Also bind HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (repeatable)." },
  { "uds", "string", nil, "Bind to a UNIX domain socket." },
  { "fd", "int", nil, "Bind to a socket from this file descriptor." },
  { "backlog", "int", 2048, "Maximum number of connections to hold in backlog." },
  { "workers", "int", nil, "Number of worker processes under a supervisor. Defaults to $WEB_CONCURRENCY; "
    .. "unset: one process, no supervisor." },
  { "reuse-port", "bool", false, "Give each worker its own SO_REUSEPORT socket instead of sharing one." },
  { "preload", "flag", false, "Load the app in the supervisor before starting workers (fail fast)." },
  { "timeout-worker-healthcheck", "number", 30, "Kill and replace a worker that does not answer the "
    .. "supervisor's health check for this many seconds." },
  { "reload", "flag", false, "Restart the server when a watched file changes (development; not with workers)." },
  { "reload-dir", "strings", nil, "Directory to watch for --reload (repeatable; default: the current directory)." },
  { "reload-include", "strings", nil, "Glob of files to watch for --reload, added to *.lua (repeatable)." },
  { "reload-exclude", "strings", nil, "Glob of files or directories to ignore for --reload, added to .*, *~ "
    .. "and *.swp (repeatable)." },
  { "reload-delay", "number", 0.25, "Seconds between two scans of the watched files." },
  { "loop", "choice", "luvrs", "Event loop module.", { "luvrs", "luv" } },
  { "http", "choice", "native", "Request-head parser (native falls back to lua on luv).", { "native", "lua" } },
  { "lifespan", "choice", "auto", "Lifespan implementation.", { "auto", "on", "off" } },
  { "ws", "choice", "auto", "WebSocket support (none: upgrade requests reach the app as HTTP).", { "auto", "none" } },
  { "ws-max-size", "int", 16777216, "WebSocket max message size in bytes." },
  { "ws-max-queue", "int", 32, "WebSocket max incoming messages queued for the app." },
  { "ws-ping-interval", "number", 20, "WebSocket ping interval in seconds." },
  { "ws-ping-timeout", "number", 20, "WebSocket ping timeout in seconds." },
  { "ws-per-message-deflate", "bool", true, "WebSocket permessage-deflate (when the loop has deflate)." },
  { "limit-concurrency", "int", nil, "Maximum concurrent connections or requests before answering 503." },
  { "limit-max-requests", "int", nil, "Maximum number of requests to serve before terminating the process." },
  { "limit-max-requests-jitter", "int", 0, "Add a random 0..N to --limit-max-requests per worker, so that "
    .. "workers do not all restart at once." },
  { "timeout-keep-alive", "number", 5, "Close Keep-Alive connections idle for this many seconds." },
  { "timeout-graceful-shutdown", "number", nil, "Maximum seconds to wait for in-flight requests on shutdown." },
  { "timeout-request-head", "number", 10, "Close a client that has not sent a complete request head in time." },
  { "max-request-head", "int", 16384, "Largest request head in bytes (431; 414 for the request line alone)." },
  { "max-headers", "int", 100, "Most header fields in a request (431)." },
  { "max-body-size", "int", nil, "Largest request body in bytes (413); default unlimited." },
  { "root-path", "string", "", "Set the LASGI 'root_path' for apps mounted below a given URL path." },
  { "proxy-headers", "bool", true, "Use X-Forwarded-Proto and X-Forwarded-For from trusted proxies." },
  { "forwarded-allow-ips", "list", "127.0.0.1,::1", "Comma-separated proxy IPs or CIDRs to trust ('*' for all, "
    .. "'unix:' for peers on a UNIX socket). Defaults to $FORWARDED_ALLOW_IPS if set." },
  { "header", "multi", nil, "Custom default response header NAME:VALUE (repeatable)." },
  { "server-header", "bool", true, "Send the 'server: luvicorn' header." },
  { "date-header", "bool", true, "Send the 'date' header." },
  { "access-log", "bool", true, "Write the access log." },
  { "access-log-format", "string", nil, "Access log line format with named fields (see docs/luvicorn.md)." },
  { "log-config", "string", nil, "Logging configuration file (a Lua file returning a table; see docs)." },
  { "log-level", "choice", "info", "Log level.", { "critical", "error", "warning", "info", "debug", "trace" } },
  { "env-file", "string", nil, "Environment configuration file (KEY=VALUE lines)." },
  { "app-dir", "string", "", "Look for the app in this directory (added to package.path)." },
  { "factory", "flag", false, "Treat APP as a factory: call it to get the app." },
  { "version", "flag", false, "Display the Luvicorn version and exit." },
  { "help", "flag", false, "Show this message and exit." },
}

local BY_NAME = {}
for _, o in ipairs(M.OPTIONS) do
  BY_NAME[o[1]] = { name = o[1], kind = o[2], default = o[3], help = o[4], choices = o[5], key = o[1]:gsub("-", "_") }
end
M.BY_NAME = BY_NAME

local function env_name(name) return "LUVICORN_" .. name:upper():gsub("-", "_") end
M.env_name = env_name

local function fail(msg) error({ usage = msg }, 0) end

local TRUE = { ["1"] = true, ["true"] = true, yes = true, on = true }
local FALSE = { ["0"] = true, ["false"] = true, no = true, off = true }

local function convert(opt, value, origin)
  local kind = opt.kind
  if kind == "string" then return value end
  if kind == "int" then
    local n = tonumber(value)
    if not n or math.type(n) ~= "integer" or n < 0 then
      fail(("%s: '%s' is not a valid non-negative integer"):format(origin, value))
    end
    return n
  elseif kind == "number" then
    local n = tonumber(value)
    if not n or n < 0 then fail(("%s: '%s' is not a valid non-negative number"):format(origin, value)) end
    return n
  elseif kind == "bool" or kind == "flag" then
    local v = value:lower()
    if TRUE[v] then return true elseif FALSE[v] then return false end
    fail(("%s: '%s' is not a valid boolean"):format(origin, value))
  elseif kind == "choice" then
    for _, c in ipairs(opt.choices) do if c == value then return value end end
    fail(("%s: '%s' is not one of %s"):format(origin, value, table.concat(opt.choices, ", ")))
  elseif kind == "list" then
    local list = {}
    for item in value:gmatch("[^,]+") do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then list[#list + 1] = item end
    end
    return list
  elseif kind == "strings" then
    if value == "" then fail(origin .. ": an empty value") end
    return value
  elseif kind == "multi" then
    local name, v = value:match("^%s*([^:]+):%s*(.*)$")
    if not name or not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") or v:find("[\r\n%z]") then
      fail(("%s: '%s' is not a valid NAME:VALUE header"):format(origin, value))
    end
    return { name:lower(), v }
  end
  error("luvicorn.config: unknown option kind " .. tostring(kind))
end

---Parses an env file: `KEY=VALUE` lines, `#` comments, optional `export `, optional quotes.
---@param path string
---@return table|nil vars
---@return string|nil err
function M.read_env_file(path)
  if type(path) ~= "string" then error("luvicorn.config.read_env_file: argument 'path' must be a string", 2) end
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local vars = {}
  for line in f:lines() do
    line = line:gsub("^%s*export%s+", "")
    local k, v = line:match("^%s*([%w_%.]+)%s*=%s*(.-)%s*$")
    if k then
      local q = v:sub(1, 1)
      if (q == '"' or q == "'") and v:sub(-1) == q and #v >= 2 then
        v = v:sub(2, -2)
        if q == '"' then v = v:gsub("\\n", "\n"):gsub('\\"', '"') end
      else
        v = v:gsub("%s+#.*$", "")
      end
      vars[k] = v
    end
  end
  f:close()
  return vars
end

---Returns a table of every option at its default (keys with underscores).
---@return table
function M.defaults()
  local c = {}
  for _, o in ipairs(M.OPTIONS) do
    local opt = BY_NAME[o[1]]
    local d = opt.default
    if opt.kind == "list" and type(d) == "string" then d = convert(opt, d, "default") end
    if opt.kind == "multi" or opt.kind == "strings" then d = {} end
    c[opt.key] = d
  end
  return c
end

---Parses the command line and the environment into a settings table.
---Raises `{ usage = message }` for a usage error.
---@param argv string[] arguments (arg[1..n])
---@param getenv? fun(name: string): string|nil defaults to os.getenv
---@return table config, with `app` (the APP argument, or nil), `given` (the keys set on the command line or
---in the environment) and `env_file_vars` when --env-file was used
function M.parse(argv, getenv)
  if type(argv) ~= "table" then error("luvicorn.config.parse: argument 'argv' must be a table", 2) end
  getenv = getenv or os.getenv
  local cli, positional = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do positional[#positional + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local negated = false
      local opt = BY_NAME[name]
      if not opt and name:sub(1, 3) == "no-" and BY_NAME[name:sub(4)] and BY_NAME[name:sub(4)].kind == "bool" then
        opt, negated = BY_NAME[name:sub(4)], true
      end
      if not opt then fail("no such option: --" .. name) end
      if opt.kind == "bool" or opt.kind == "flag" then
        if value then fail(("option --%s does not take a value"):format(name)) end
        cli[opt.key] = not negated
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then fail(("option --%s requires an argument"):format(name)) end
        end
        local v = convert(opt, value, "--" .. name)
        if opt.key == "host" then
          -- repeatable: `host` keeps the last (Uvicorn's meaning), `hosts` has them all
          cli.hosts = cli.hosts or {}
          table.insert(cli.hosts, v)
        end
        if opt.kind == "multi" or opt.kind == "strings" then
          cli[opt.key] = cli[opt.key] or {}
          table.insert(cli[opt.key], v)
        else
          cli[opt.key] = v
        end
      end
    elseif a == "-h" then
      cli.help = true
    else
      positional[#positional + 1] = a
    end
    i = i + 1
  end
  if #positional > 1 then fail("got unexpected extra arguments: " .. table.concat(positional, " ", 2)) end

  -- the env file feeds LUVICORN_* too; the real environment wins over it (as with python-dotenv)
  local env_file = cli.env_file or getenv(env_name("env-file"))
  local file_vars
  if env_file then
    local vars, err = M.read_env_file(env_file)
    if not vars then fail("--env-file: cannot read " .. tostring(err)) end
    file_vars = vars
  end
  local function env(n)
    local v = getenv(n)
    if v == nil and file_vars then v = file_vars[n] end
    return v
  end

  local c = M.defaults()
  -- options set on the command line or in the environment, even to their default value: they win over
  -- --log-config, and a --host given beside --bind/--uds/--fd is bound too
  local given = {}
  for _, o in ipairs(M.OPTIONS) do
    local opt = BY_NAME[o[1]]
    local key = opt.key
    if cli[key] ~= nil then
      c[key] = cli[key]
      given[key] = true
    elseif opt.kind ~= "flag" or opt.name == "factory" then
      local v = env(env_name(opt.name))
      if v ~= nil and v ~= "" then
        if opt.kind == "multi" then
          local list = {}
          for line in v:gmatch("[^\n]+") do list[#list + 1] = convert(opt, line, env_name(opt.name)) end
          c[key] = list
        elseif opt.kind == "strings" then
          local list = {}
          for item in v:gmatch("[^,\n]+") do
            item = item:match("^%s*(.-)%s*$")
            if item ~= "" then list[#list + 1] = item end
          end
          c[key] = list
        else
          c[key] = convert(opt, v, env_name(opt.name))
        end
        given[key] = true
      end
    end
  end
  -- the conventions of Gunicorn and Uvicorn, below their LUVICORN_* names
  if c.workers == nil and cli.workers == nil then
    local wc = env("WEB_CONCURRENCY")
    if wc and wc ~= "" then
      c.workers = convert(BY_NAME.workers, wc, "WEB_CONCURRENCY")
      given.workers = true
    end
  end
  if cli.forwarded_allow_ips == nil and env(env_name("forwarded-allow-ips")) == nil then
    local fa = env("FORWARDED_ALLOW_IPS")
    if fa and fa ~= "" then
      c.forwarded_allow_ips = convert(BY_NAME["forwarded-allow-ips"], fa, "FORWARDED_ALLOW_IPS")
      given.forwarded_allow_ips = true
    end
  end
  c.hosts = cli.hosts or { c.host }
  c.given = given
  c.app = positional[1] or env("LUVICORN_APP")
  c.env_file_vars = file_vars
  return c
end

---Checks and completes a settings table given to `luvicorn.run(app, opts)` (underscored keys).
---@param opts table|nil
---@return table config
function M.normalize(opts)
  if opts ~= nil and type(opts) ~= "table" then error("luvicorn.run: argument 'opts' must be a table", 3) end
  local c = M.defaults()
  local given = {}
  for k, v in pairs(opts or {}) do
    local name = tostring(k):gsub("_", "-")
    local opt = BY_NAME[name]
    if not opt and k ~= "app" and k ~= "log" and k ~= "hosts" then
      error("luvicorn.run: unknown option '" .. tostring(k) .. "'", 3)
    end
    if opt and type(v) == "string" and opt.kind ~= "string" and opt.kind ~= "choice" then
      local ok, conv = pcall(convert, opt, v, "luvicorn.run: option '" .. k .. "'")
      if not ok then error(conv.usage or conv, 3) end
      v = conv
    elseif opt and opt.kind == "choice" then
      local ok, err = pcall(convert, opt, v, "luvicorn.run: option '" .. k .. "'")
      if not ok then error(err.usage or err, 3) end
    end
    c[k] = v
    given[k] = true
  end
  if c.hosts == nil then c.hosts = { c.host } end
  if given.hosts then given.host = true end
  c.given = given
  return c
end

---The --help text.
---@return string
function M.help()
  local lines = {
    "Usage: luvicorn [OPTIONS] APP",
    "",
    "  APP is module.path:attr, module.path, or path/to/file.lua[:attr].",
    "  Every option can also be set with LUVICORN_<NAME> (e.g. LUVICORN_PORT=9000).",
    "",
    "Options:",
  }
  for _, o in ipairs(M.OPTIONS) do
    local opt = BY_NAME[o[1]]
    local flag = "--" .. opt.name
    if opt.kind == "bool" then
      flag = flag .. " / --no-" .. opt.name
    elseif opt.kind == "choice" then
      flag = flag .. " [" .. table.concat(opt.choices, "|") .. "]"
    elseif opt.kind == "multi" then
      flag = flag .. " NAME:VALUE"
    elseif opt.kind == "strings" then
      flag = flag .. " TEXT"
    elseif opt.kind ~= "flag" then
      flag = flag .. " " .. (opt.kind == "string" and "TEXT" or opt.kind:upper())
    end
    local help = opt.help
    if opt.default ~= nil and opt.default ~= "" and opt.kind ~= "flag" then
      help = help .. " [default: " .. tostring(opt.default) .. "]"
    end
    if #flag > 36 then
      lines[#lines + 1] = "  " .. flag
      lines[#lines + 1] = (" "):rep(40) .. help
    else
      lines[#lines + 1] = ("  %-37s %s"):format(flag, help)
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

return M
