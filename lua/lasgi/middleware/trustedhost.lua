-- TrustedHost: refuses requests whose Host header is not in the allowed list (400 "Invalid host header").
local datastructures = require "lasgi.datastructures"
local responses = require "lasgi.responses"

local M = {}

local function host_of(value)
  if not value then return "" end
  local v6 = value:match("^(%[.-%])")
  if v6 then return v6:lower() end
  return (value:match("^([^:]*)") or ""):lower()
end

---Wraps `app`. opts: allowed_hosts ({"*"}; entries "example.com" or "*.example.com"),
---www_redirect (true: a request for "example.com" is redirected to "www.example.com" when only the
---latter is allowed).
---@param app function|table
---@param opts? table
---@return function
function M.new(app, opts)
  opts = opts or {}
  local hosts = opts.allowed_hosts or { "*" }
  if type(hosts) ~= "table" then error("TrustedHostMiddleware: argument 'allowed_hosts' must be a list", 2) end
  -- Host names are compared lower-case (host_of lowers the request's): normalise the list once.
  local any, listed, suffixes = false, {}, {}
  for _, h in ipairs(hosts) do
    if h == "*" then any = true
    elseif h:find("*", 1, true) and not h:match("^%*%.[^*]+$") then
      error("TrustedHostMiddleware: wildcard only allowed as a '*.' prefix: " .. h, 2)
    elseif h:sub(1, 1) == "*" then
      suffixes[#suffixes + 1] = h:sub(2):lower()
    else
      listed[h:lower()] = true
    end
  end
  local www_redirect = opts.www_redirect ~= false

  local function allowed(host)
    if listed[host] then return true end
    for _, suffix in ipairs(suffixes) do
      if host:sub(-#suffix) == suffix then return true end
    end
    return false
  end

  return function(scope, receive, send)
    if any or (scope.type ~= "http" and scope.type ~= "websocket") then return app(scope, receive, send) end
    local host = host_of(datastructures.header(scope.headers, "host"))
    if allowed(host) then return app(scope, receive, send) end
    if scope.type == "websocket" then
      receive() -- websocket.connect: the close answers it (the server turns it into a 403)
      return send({ type = "websocket.close", code = 1008, reason = "Invalid host header" })
    end
    -- The www redirect needs "www.<host>" listed as such: a wildcard entry does not imply it.
    if www_redirect and host:sub(1, 4) ~= "www." and listed["www." .. host] then
      local url = datastructures.url_from_scope(scope)
      url = url:replace({ hostname = "www." .. url.hostname })
      return responses.redirect(tostring(url), 307)(scope, receive, send)
    end
    return responses.text("Invalid host header", 400)(scope, receive, send)
  end
end

return setmetatable(M, { __call = function(_, app, opts) return M.new(app, opts) end })
