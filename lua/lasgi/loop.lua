-- The loop module lasgi may use for file metadata, path resolution, deflate and driving luvrs.co.
-- lasgi never loads or starts a loop of its own: it uses the one the server (or the program) has loaded,
-- so two loop modules are never mixed in one process (conventions.md).
local M = {}

---Returns the loop module already loaded (luvrs, then luv), else nil.
---@return table|nil
function M.loaded()
  return package.loaded.luvrs or package.loaded.luv
end

---The loop module to use: the one already loaded, else nil (lasgi then uses its pure-Lua fallbacks).
---@return table|nil
M.get = M.loaded

return M
