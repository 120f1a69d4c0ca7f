--- Luvicorn, the LASGI server: `require("luvicorn").run(app, opts)`.
---@class luvicorn
local M = {}

local config_mod = require("luvicorn.config")

M.VERSION = config_mod.VERSION

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end
M.callable = callable

local function index_path(value, attr, spec)
  for part in attr:gmatch("[^%.]+") do
    if type(value) ~= "table" then return nil, ("Attribute %q not found in %q."):format(attr, spec) end
    value = value[part]
  end
  if value == nil then return nil, ("Attribute %q not found in %q."):format(attr, spec) end
  return value
end

---Loads an app from `module.path:attr`, `module.path`, or `path/to/file.lua[:attr]`.
---@param spec string
---@param factory? boolean call the result to get the app
---@param app_dir? string directory added to package.path
---@return any|nil app
---@return string|nil err
function M.load_app(spec, factory, app_dir)
  if type(spec) ~= "string" or spec == "" then
    error("luvicorn.load_app: argument 'spec' must be a non-empty string", 2)
  end
  if app_dir and app_dir ~= "" then
    package.path = app_dir .. "/?.lua;" .. app_dir .. "/?/init.lua;" .. package.path
  end
  local target, attr = spec:match("^(.-%.lua):([%w_%.]+)$")
  if not target then
    if spec:match("%.lua$") then
      target = spec
    else
      target, attr = spec:match("^([^:]+):([%w_%.]+)$")
      if not target then target = spec end
    end
  end
  local value
  if target:match("%.lua$") then
    local path = target
    if app_dir and app_dir ~= "" and not path:match("^/") then
      local f = io.open(path, "r")
      if f then f:close() else path = app_dir .. "/" .. path end
    end
    local chunk, err = loadfile(path)
    if not chunk then return nil, "Error loading LASGI app. " .. tostring(err) end
    local ok, res = xpcall(chunk, debug.traceback, path)
    if not ok then return nil, "Error loading LASGI app. " .. tostring(res) end
    value = res
  else
    if not target:match("^[%w_%.%-/]+$") then
      return nil, ("Error loading LASGI app. Import string %q must be in format \"<module>:<attribute>\".")
        :format(spec)
    end
    local ok, res = xpcall(require, debug.traceback, target)
    if not ok then
      return nil, "Error loading LASGI app. Could not import module \"" .. target .. "\".\n" .. tostring(res)
    end
    value = res
  end
  local app
  if attr then
    local err
    app, err = index_path(value, attr, spec)
    if app == nil then return nil, "Error loading LASGI app. " .. err end
  elseif callable(value) then
    app = value
  elseif type(value) == "table" and value.app ~= nil then
    app = value.app
  elseif type(value) == "table" and value.application ~= nil then
    app = value.application
  else
    return nil, ("Error loading LASGI app. %q returned no callable app (nor an 'app' or 'application' field).")
      :format(spec)
  end
  if factory then
    if not callable(app) then return nil, "Error loading LASGI app factory: " .. spec .. " is not callable." end
    local ok, res = xpcall(app, debug.traceback)
    if not ok then return nil, "Error loading LASGI app factory. " .. tostring(res) end
    app = res
  end
  if not callable(app) then return nil, "Error loading LASGI app. " .. spec .. " is not callable." end
  return app
end

---Serves `app` until shut down; returns the exit code (0 graceful, 1 forced, 3 startup failure).
---`opts` takes the command-line options with underscores (`port`, `timeout_keep_alive`, `loop`, ...).
---@param app any LASGI app (callable)
---@param opts? table
---@return integer exit_code
function M.run(app, opts)
  if not callable(app) then error("luvicorn.run: argument 'app' must be callable", 2) end
  local config = config_mod.normalize(opts)
  if config.workers or config.reload then
    -- each worker is a fresh process that loads the app by name: a Lua value cannot travel there
    error("luvicorn.run: options 'workers' and 'reload' need the app as an import string: use the luvicorn "
      .. "command (luvicorn APP --workers N)", 2)
  end
  local server = require("luvicorn.server").new(app, config, opts and opts.log)
  return server:run()
end

return M
