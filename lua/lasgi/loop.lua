-- The loop module lasgi may use for file metadata, path resolution, deflate and driving luvrs.co.
-- lasgi never starts a loop of its own: it uses the one the server loaded, so two loop modules are never
-- mixed in one process (conventions.md).
local M = {}

local cached

---Returns the loop module already loaded (luvrs, then luv), else nil.
---@return table|nil
function M.loaded()
  return package.loaded.luvrs or package.loaded.luv
end

---Returns the loop module: the one already loaded, else the first of "luvrs", "luv" that loads; nil if none.
---@return table|nil
function M.get()
  local uv = M.loaded()
  if uv then return uv end
  if cached == nil then
    cached = false
    for _, name in ipairs({ "luvrs", "luv" }) do
      local ok, mod = pcall(require, name)
      if ok and type(mod) == "table" then
        cached = mod
        break
      end
    end
  end
  return cached or nil
end

return M
