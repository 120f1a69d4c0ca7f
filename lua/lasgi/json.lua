-- JSON through lua-cjson, with its quirks handled in one place.
--
-- * A private cjson instance (cjson.new()) so that our settings never change the global `cjson` module.
-- * JSON null decodes to `json.null` (cjson's lightuserdata sentinel); encode `json.null` to write null.
-- * An empty Lua table is ambiguous: it encodes as `{}`. Wrap it with `json.array(t)` to encode `[]`
--   (works for nested tables too). Decoding cannot tell `[]` from `{}`: both become an empty table.
-- * Sparse arrays encode as arrays with nulls in the gaps instead of raising.
local cjson_mod = require "cjson"

local cjson = cjson_mod.new()
cjson.encode_sparse_array(true)
cjson.encode_invalid_numbers(false)

local M = {}

M.null = cjson.null

local array_mt = { __name = "lasgi.json.array" }
M.array_mt = array_mt

-- An improbable string that stands for an empty array while cjson encodes, then is replaced by [].
local EMPTY = "\1lasgi\2empty\3array\1"
local EMPTY_JSON = '"\\u0001lasgi\\u0002empty\\u0003array\\u0001"'

---Marks `t` (default a new table) as a JSON array, so that it encodes as `[]` when empty.
---@param t? table
---@return table
function M.array(t)
  t = t or {}
  if type(t) ~= "table" then error("json.array: argument 't' must be a table", 2) end
  return setmetatable(t, array_mt)
end

local function has_marked_empty(v, depth)
  if depth > 100 then return false end
  if getmetatable(v) == array_mt and next(v) == nil then return true end
  for _, x in pairs(v) do
    if type(x) == "table" and has_marked_empty(x, depth + 1) then return true end
  end
  return false
end

local function substitute(v)
  if type(v) ~= "table" then return v end
  if getmetatable(v) == array_mt and next(v) == nil then return EMPTY end
  local out = {}
  for k, x in pairs(v) do out[k] = substitute(x) end
  return out
end

---Encodes a Lua value as JSON text; raises "json.encode: ..." on values JSON cannot carry.
---@param value any
---@return string
function M.encode(value)
  local v = value
  local marked = type(v) == "table" and has_marked_empty(v, 0)
  if marked then v = substitute(v) end
  local ok, out = pcall(cjson.encode, v)
  if not ok then error("json.encode: " .. tostring(out), 2) end
  if marked then out = out:gsub(EMPTY_JSON, "[]", nil) end
  return out
end

---Decodes JSON text; returns nil, message on invalid JSON.
---@param text string
---@return any value, string|nil err
function M.decode(text)
  if type(text) ~= "string" then error("json.decode: argument 'text' must be a string", 2) end
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, tostring(v) end
  return v
end

return M
