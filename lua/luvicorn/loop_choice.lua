--- Picks the loop module once per process (see luvicorn.loop).
---@class luvicorn.loop_choice
local M = {}

M.NAMES = { luvrs = true, luv = true }

---Loads and records the loop module. `name` nil means: the one already in use, else LUVICORN_LOOP, else
---"luvrs". Raises a clear error when the module cannot be loaded or another one is already in use.
---@param name string|nil "luvrs"|"luv"
---@return table uv
---@return string name
function M.use(name)
  if name ~= nil and not M.NAMES[name] then
    error("luvicorn.loop: argument 'name' must be \"luvrs\" or \"luv\", got " .. tostring(name), 2)
  end
  if M.current then
    if name and name ~= M.name then
      error(("luvicorn.loop: the loop module %q is already in use, cannot switch to %q"):format(M.name, name), 2)
    end
    return M.current, M.name
  end
  if not name then
    local env = os.getenv("LUVICORN_LOOP")
    if env and env ~= "" then
      if not M.NAMES[env] then error("LUVICORN_LOOP must be \"luvrs\" or \"luv\", got " .. env, 2) end
      name = env
    elseif package.loaded.luvrs then
      name = "luvrs"
    elseif package.loaded.luv then
      name = "luv"
    else
      name = "luvrs"
    end
  end
  local other = name == "luvrs" and "luv" or "luvrs"
  if type(package.loaded[other]) == "table" and package.loaded[other].run then
    error(("luvicorn.loop: %q is already loaded in this process; refusing to mix it with %q"):format(other, name), 2)
  end
  local ok, mod = pcall(require, name)
  if not ok then
    local hint = name == "luvrs" and " (build it with `make build`, or run with --loop luv)" or
      " (install it: apt-get install lua-luv)"
    error(("cannot load the loop module %q%s:\n%s"):format(name, hint, tostring(mod)), 0)
  end
  M.current, M.name = mod, name
  package.loaded["luvicorn.loop"] = mod
  return mod, name
end

---Raises a clear error unless `uv` has every function in `names`.
---@param uv table
---@param names string[]
---@param what string what needs them
function M.require_functions(uv, names, what)
  local missing = {}
  for _, n in ipairs(names) do
    if uv[n] == nil then missing[#missing + 1] = n end
  end
  if #missing > 0 then
    error(("the loop module %q lacks %s, needed for %s"):format(M.name or "?", table.concat(missing, ", "), what), 0)
  end
end

return M
