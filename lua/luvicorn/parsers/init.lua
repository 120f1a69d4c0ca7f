--- Chooses the request-head parser: the native one of luvrs (`uv.http_parse_head`) or the pure-Lua one.
--- Both follow the contract written at the top of luvicorn/parsers/lua.lua.
---@class luvicorn.parsers
local M = {}

local lua_parser = require("luvicorn.parsers.lua")

-- parse_request (when the module has it) is parse_head plus the protocol's field checks and target split;
-- response_headers checks and joins a response's header list (the protocol's Lua loop otherwise).
local function native(uv)
  return { name = "native", parse_head = uv.http_parse_head, parse_request = uv.http_parse_request,
    response_headers = uv.http_response_headers }
end

---Every available implementation, the Lua one first (the specs run their cases over each).
---@param uv table|nil the loop module
---@return table[] list of `{ name = "lua"|"native", parse_head = fn, parse_request = fn|nil,
---response_headers = fn|nil }`
function M.available(uv)
  local list = { lua_parser }
  if uv and uv.http_parse_head then list[2] = native(uv) end
  return list
end

---Returns the parser for `which` ("native" or "lua"). "native" falls back to Lua when the loop module
---has no native parser (the real luv), and says so in the second result.
---@param which string "native"|"lua"
---@param uv table|nil the loop module
---@return table parser `{ name, parse_head, parse_request, response_headers }` (the last two: native only,
---may be nil)
---@return string|nil note why the choice differs from the request
function M.choose(which, uv)
  if which ~= "native" and which ~= "lua" then
    error("luvicorn.parsers.choose: argument 'which' must be \"native\" or \"lua\", got " .. tostring(which), 2)
  end
  if which == "native" then
    if uv and uv.http_parse_head then return native(uv) end
    return lua_parser, "the loop module has no native HTTP parser (uv.http_parse_head); using the Lua parser"
  end
  return lua_parser
end

return M
