-- HTTPS redirect: requests over http (ws) are redirected (307) to the same URL over https (wss).
local datastructures = require "lasgi.datastructures"
local responses = require "lasgi.responses"

local M = {}

---Wraps `app`. A WebSocket over ws:// is closed with 1008 unless the server offers
---websocket.http.response, in which case it gets the redirect as an HTTP response.
---@param app function|table
---@return function
function M.new(app)
  return function(scope, receive, send)
    local scheme = scope.scheme
    if (scope.type ~= "http" and scope.type ~= "websocket") or scheme == "https" or scheme == "wss" then
      return app(scope, receive, send)
    end
    local url = datastructures.url_from_scope(scope)
    local port = url.port
    if port == 80 or port == 443 then port = false end
    url = url:replace({ scheme = scope.type == "websocket" and "wss" or "https", port = port })
    if scope.type == "websocket" and not (scope.extensions and scope.extensions["websocket.http.response"]) then
      receive()
      return send({ type = "websocket.close", code = 1008, reason = "HTTPS required" })
    end
    if scope.type == "websocket" then receive() end
    return responses.redirect(tostring(url), 307)(scope, receive, send)
  end
end

return setmetatable(M, { __call = function(_, app) return M.new(app) end })
