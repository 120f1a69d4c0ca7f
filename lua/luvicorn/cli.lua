--- The `luvicorn` command: `luvicorn APP [options]`.
---@class luvicorn.cli
local M = {}

local config_mod = require("luvicorn.config")

---Runs the command with `argv` (arg[1..n]); returns the exit code. `worker` is set when a supervisor
---started this process as one of its workers (see luvicorn.worker).
---@param argv string[]
---@param worker? table
---@return integer
function M.main(argv, worker)
  if type(argv) ~= "table" then error("luvicorn.cli.main: argument 'argv' must be a table", 2) end
  local ok, config = pcall(config_mod.parse, argv)
  if not ok then
    if type(config) == "table" and config.usage then
      io.stderr:write("Usage: luvicorn [OPTIONS] APP\nTry 'luvicorn --help' for help.\n\nError: ", config.usage, "\n")
      return 2
    end
    error(config, 0)
  end
  if config.help then
    io.stdout:write(config_mod.help())
    return 0
  end
  if config.version then
    io.stdout:write(("Running luvicorn %s with %s on %s\n"):format(config_mod.VERSION, _VERSION, config.loop))
    return 0
  end
  if not config.app then
    io.stderr:write("Usage: luvicorn [OPTIONS] APP\nTry 'luvicorn --help' for help.\n\n",
      "Error: Missing argument 'APP'.\n")
    return 2
  end
  if config.env_file_vars then
    -- Lua cannot set the process environment: apps see the file through os.getenv instead
    local vars, getenv = config.env_file_vars, os.getenv
    os.getenv = function(name) -- luacheck: ignore 122
      local v = getenv(name)
      if v == nil then v = vars[name] end
      return v
    end
  end
  local logging = require("luvicorn.logging")
  local log, log_err = logging.from_config(config)
  if not log then
    io.stderr:write("ERROR:    ", log_err, "\n")
    return 3
  end
  if not worker and (config.workers or config.reload) then
    return require("luvicorn.supervisor").run(config, argv, log)
  end
  -- choose the loop before the app loads, so an app that requires "luvicorn.loop" gets the same one
  local lok, lerr = pcall(require("luvicorn.loop_choice").use, config.loop)
  if not lok then
    log:error(tostring(lerr))
    return 3
  end
  local luvicorn = require("luvicorn")
  local app, err = luvicorn.load_app(config.app, config.factory, config.app_dir)
  if not app then
    log:error(err)
    return 3
  end
  local server = require("luvicorn.server").new(app, config, log)
  server.worker = worker
  return server:run()
end

return M
