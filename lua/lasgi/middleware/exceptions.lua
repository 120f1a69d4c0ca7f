-- Turns HTTPException (and errors with a registered handler) into responses; WebSocketException into a
-- close. Errors without a handler, and errors raised after the response started, propagate.
local exceptions = require "lasgi.exceptions"
local responses = require "lasgi.responses"
local request_mod = require "lasgi.request"

local M = {}

---The default response for an HTTPException.
---@param err table
---@return lasgi.Response
function M.http_exception_response(err)
  if err.status == 204 or err.status == 304 then return responses.response("", err.status, err.headers) end
  return responses.text(err.detail, err.status, err.headers)
end

---Wraps `app`. `handlers` maps a status code (for HTTPException) or an error class (an error's
---metatable) to function(request, err) -> response.
---@param app function|table
---@param handlers? table
---@return function
function M.new(app, handlers)
  handlers = handlers or {}
  return function(scope, receive, send)
    if scope.type ~= "http" and scope.type ~= "websocket" then return app(scope, receive, send) end
    scope["lasgi.exceptions"] = true
    local started = false
    local function tracked(ev)
      if ev.type == "http.response.start" or ev.type == "websocket.accept" or ev.type == "websocket.close"
          or ev.type == "websocket.http.response.start" then
        started = true
      end
      return send(ev)
    end
    local ok, err = xpcall(app, exceptions.traceback, scope, receive, tracked)
    if ok then return end
    if exceptions.is(err, exceptions.ClientDisconnect) then return end
    if scope.type == "websocket" then
      if exceptions.is(err, exceptions.WebSocketException) and not started then
        send({ type = "websocket.close", code = err.code, reason = err.reason })
        return
      end
      error(err, 0)
    end
    local handler
    if exceptions.is(err, exceptions.HTTPException) then
      handler = handlers[err.status] or handlers[exceptions.HTTPException] or function(_, e)
        return M.http_exception_response(e)
      end
    elseif type(err) == "table" then
      handler = handlers[getmetatable(err)]
    end
    if not handler or started then error(err, 0) end
    local resp = handler(request_mod.new(scope, receive, send), err)
    resp(scope, receive, send)
  end
end

return setmetatable(M, { __call = function(_, app, handlers) return M.new(app, handlers) end })
