-- Path parameter convertors: `{name:type}` in route paths.
-- Each convertor has `pattern` (a Lua pattern for one capture, without anchors), `convert` (string ->
-- value, or nil to refuse the match) and `to_string` (value -> path text, raising on a bad value).
local M = {}

local function hexes(n) return ("%x"):rep(n) end

M.str = {
  pattern = "[^/]+",
  convert = function(s) return s end,
  to_string = function(v)
    v = tostring(v)
    if v == "" or v:find("/", 1, true) then error("str convertor: value must be non-empty, without '/'", 0) end
    return v
  end,
}

M.path = {
  pattern = ".*",
  convert = function(s) return s end,
  to_string = function(v) return tostring(v) end,
}

M.int = {
  pattern = "%d+",
  convert = function(s) return math.tointeger(tonumber(s)) end,
  to_string = function(v)
    if math.type(v) ~= "integer" or v < 0 then error("int convertor: value must be a non-negative integer", 0) end
    return tostring(v)
  end,
}

M.float = {
  pattern = "%d+%.?%d*",
  convert = function(s)
    if s:match("^%d+$") or s:match("^%d+%.%d+$") then return tonumber(s) + 0.0 end
    return nil
  end,
  to_string = function(v)
    if type(v) ~= "number" or v < 0 or v ~= v or v == math.huge then
      error("float convertor: value must be a non-negative finite number", 0)
    end
    local s = ("%.15g"):format(v)
    if not s:find("[%.e]") then return s end
    if s:find("e") then s = ("%.20f"):format(v):gsub("0+$", ""):gsub("%.$", "") end
    return s
  end,
}

M.uuid = {
  pattern = hexes(8) .. "%-" .. hexes(4) .. "%-" .. hexes(4) .. "%-" .. hexes(4) .. "%-" .. hexes(12),
  convert = function(s) return s:lower() end,
  to_string = function(v)
    v = tostring(v)
    if not v:match("^" .. M.uuid.pattern .. "$") then error("uuid convertor: value must be a UUID", 0) end
    return v:lower()
  end,
}

---Adds a convertor usable as `{name:<type>}`.
---@param name string
---@param conv table { pattern = string, convert = function, to_string = function }
function M.register(name, conv)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error("convertors.register: argument 'name' must be an identifier", 2)
  end
  if type(conv) ~= "table" or type(conv.pattern) ~= "string" or type(conv.convert) ~= "function"
      or type(conv.to_string) ~= "function" then
    error("convertors.register: argument 'conv' needs pattern, convert and to_string", 2)
  end
  M[name] = conv
end

return M
