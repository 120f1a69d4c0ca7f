-- Errors that carry an HTTP status or a WebSocket close code. Raise them with error(); the App (or
-- exceptions.wrap) turns an HTTPException into a response and a WebSocketException into a close.
local status_phrases = require "lasgi.status"

local M = {}

local HTTPException = { __name = "lasgi.HTTPException" }
HTTPException.__index = HTTPException
HTTPException.__tostring = function(e) return ("HTTPException(%d): %s"):format(e.status, e.detail) end
M.HTTPException = HTTPException

---Creates an HTTP error: `error(exceptions.HTTPException(404))`.
---@param status integer
---@param detail? string defaults to the status phrase
---@param headers? table extra response headers (map or list of pairs)
---@return table
function M.http(status, detail, headers)
  if math.type(status) ~= "integer" or status < 400 or status > 599 then
    error("HTTPException: argument 'status' must be an integer 400..599", 2)
  end
  return setmetatable({ status = status, detail = detail or status_phrases[status] or "Error",
                        headers = headers }, HTTPException)
end
setmetatable(HTTPException, { __call = function(_, ...) return M.http(...) end })

local WebSocketException = { __name = "lasgi.WebSocketException" }
WebSocketException.__index = WebSocketException
WebSocketException.__tostring = function(e) return ("WebSocketException(%d): %s"):format(e.code, e.reason) end
M.WebSocketException = WebSocketException

---Creates a WebSocket error that closes the connection with `code` and `reason`.
---@param code integer
---@param reason? string
---@return table
function M.websocket(code, reason)
  if math.type(code) ~= "integer" then error("WebSocketException: argument 'code' must be an integer", 2) end
  return setmetatable({ code = code, reason = reason or "" }, WebSocketException)
end
setmetatable(WebSocketException, { __call = function(_, ...) return M.websocket(...) end })

local WebSocketDisconnect = { __name = "lasgi.WebSocketDisconnect" }
WebSocketDisconnect.__index = WebSocketDisconnect
WebSocketDisconnect.__tostring = function(e) return ("WebSocketDisconnect(%d)"):format(e.code) end
M.WebSocketDisconnect = WebSocketDisconnect

---The error a WebSocket session raises when the peer is gone.
---@param code? integer
---@param reason? string
---@return table
function M.disconnect(code, reason)
  return setmetatable({ code = code or 1000, reason = reason or "" }, WebSocketDisconnect)
end

local ClientDisconnect = { __name = "lasgi.ClientDisconnect" }
ClientDisconnect.__index = ClientDisconnect
ClientDisconnect.__tostring = function() return "ClientDisconnect: the client left before the body was read" end
M.ClientDisconnect = ClientDisconnect

---The error Request:body() raises when the client disconnects before the body is complete.
---@return table
function M.client_disconnect()
  return setmetatable({}, ClientDisconnect)
end

---True when something up the chain (an App, or the Exceptions middleware) turns raised HTTPExceptions into
---responses, so that routes may raise them instead of answering themselves.
---@param scope table
---@return boolean
function M.handled(scope)
  return scope.app ~= nil or scope["lasgi.exceptions"] == true
end

---Message handler for xpcall: error objects (tables) pass through unchanged so that handlers can match
---their class; anything else becomes its text with a traceback.
---@param e any
---@return any
function M.traceback(e)
  if type(e) == "table" then return e end
  return debug.traceback(tostring(e), 2)
end

---True when `e` is an error object of class `cls`.
---@param e any
---@param cls table
---@return boolean
function M.is(e, cls)
  return type(e) == "table" and getmetatable(e) == cls
end

return M
