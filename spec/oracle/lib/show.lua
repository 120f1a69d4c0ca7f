-- Output of the oracle scenarios, one line per event: `require "spec.oracle.lib.show"` from the
-- repository root, where the scenarios run. It lives below spec/oracle/ so that the oracle spec,
-- which runs every spec/oracle/*.lua, does not take it for a scenario.
local M = {}

---`v` as text; a handle as its type prefix (uv_tcp_t) since its address differs from run to run.
---@return string
function M.text(v)
  if type(v) == "userdata" then return tostring(v):match("^(%S+):") or "userdata" end
  return tostring(v)
end

---A function joining its arguments, each through `text` (default M.text), with `sep`.
---@param sep string
---@param text? fun(v: any): string
function M.formatter(sep, text)
  text = text or M.text
  return function(...)
    local out = {}
    for i = 1, select("#", ...) do out[i] = text((select(i, ...))) end
    return table.concat(out, sep)
  end
end

---A function printing its arguments as one line (see M.formatter).
---@param sep string
---@param text? fun(v: any): string
function M.printer(sep, text)
  local format = M.formatter(sep, text)
  return function(...) print(format(...)) end
end

return M
