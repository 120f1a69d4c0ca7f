-- CORS: answers preflight requests and adds Access-Control-* headers to simple and actual requests.
local datastructures = require "lasgi.datastructures"
local responses = require "lasgi.responses"

local M = {}

local ALL_METHODS = { "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT" }
local SAFELISTED_HEADERS = { "accept", "accept-language", "content-language", "content-type" }

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

---Wraps `app`. opts: allow_origins ({} ; "*" for any), allow_origin_regex (a Lua pattern, anchored),
---allow_methods ({"GET"}; "*" for all), allow_headers ({}; "*" for any), allow_credentials (false),
---expose_headers ({}), max_age (600).
---@param app function|table
---@param opts? table
---@return function
function M.new(app, opts)
  opts = opts or {}
  local origins = opts.allow_origins or {}
  local methods = opts.allow_methods or { "GET" }
  local headers = opts.allow_headers or {}
  if type(origins) ~= "table" then error("CORSMiddleware: argument 'allow_origins' must be a list", 2) end
  local origin_set = set_of(origins)
  local allow_all_origins = origin_set["*"] == true
  local allow_all_headers = set_of(headers)["*"] == true
  if set_of(methods)["*"] then methods = ALL_METHODS end
  local method_set = set_of(methods)
  local header_list = {}
  local hs = set_of(SAFELISTED_HEADERS)
  for _, h in ipairs(headers) do if h ~= "*" then hs[h:lower()] = true end end
  for h in pairs(hs) do header_list[#header_list + 1] = h end
  table.sort(header_list)
  local regex = opts.allow_origin_regex
  local credentials = opts.allow_credentials == true
  local explicit_origin = credentials or not allow_all_origins

  local simple = datastructures.headers()
  if allow_all_origins and not credentials then simple:set("access-control-allow-origin", "*") end
  if credentials then simple:set("access-control-allow-credentials", "true") end
  if opts.expose_headers and #opts.expose_headers > 0 then
    simple:set("access-control-expose-headers", table.concat(opts.expose_headers, ", "))
  end

  local preflight = datastructures.headers()
  if explicit_origin then preflight:set("vary", "Origin")
  else preflight:set("access-control-allow-origin", "*") end
  preflight:set("access-control-allow-methods", table.concat(methods, ", "))
  preflight:set("access-control-max-age", tostring(opts.max_age or 600))
  if #header_list > 0 and not allow_all_headers then
    preflight:set("access-control-allow-headers", table.concat(header_list, ", "))
  end
  if credentials then preflight:set("access-control-allow-credentials", "true") end

  local function origin_allowed(origin)
    if allow_all_origins then return true end
    if regex and origin:match("^" .. regex .. "$") then return true end
    return origin_set[origin] == true
  end

  local function preflight_response(origin, req_headers)
    local method = datastructures.header(req_headers, "access-control-request-method")
    local requested = datastructures.header(req_headers, "access-control-request-headers")
    local h = datastructures.headers(preflight)
    local failures = {}
    if origin_allowed(origin) then
      if explicit_origin then h:set("access-control-allow-origin", origin) end
    else
      failures[#failures + 1] = "origin"
    end
    if not method_set[method] then failures[#failures + 1] = "method" end
    if allow_all_headers and requested then
      h:set("access-control-allow-headers", requested)
    elseif requested then
      for name in requested:gmatch("[^,%s]+") do
        if not hs[name:lower()] then failures[#failures + 1] = "headers"; break end
      end
    end
    if #failures > 0 then
      return responses.text("Disallowed CORS " .. table.concat(failures, ", "), 400, h.raw)
    end
    return responses.text("OK", 200, h.raw)
  end

  return function(scope, receive, send)
    if scope.type ~= "http" then return app(scope, receive, send) end
    local req_headers = scope.headers
    local origin = datastructures.header(req_headers, "origin")
    if not origin then return app(scope, receive, send) end
    if scope.method == "OPTIONS" and datastructures.header(req_headers, "access-control-request-method") then
      return preflight_response(origin, req_headers)(scope, receive, send)
    end
    local has_cookie = datastructures.header(req_headers, "cookie") ~= nil
    return app(scope, receive, function(ev)
      if ev.type == "http.response.start" then
        local h = datastructures.headers(ev.headers or {})
        for name, value in simple:items() do h:set(name, value) end
        if (allow_all_origins and has_cookie) or (explicit_origin and origin_allowed(origin)) then
          h:set("access-control-allow-origin", origin)
          h:add_vary("vary", "Origin")
        end
        return send(datastructures.with_headers(ev, h))
      end
      return send(ev)
    end)
  end
end

return setmetatable(M, { __call = function(_, app, opts) return M.new(app, opts) end })
