-- WebSocket session: a friendlier face over the websocket.* events of one connection.
local request_mod = require "lasgi.request"
local exceptions = require "lasgi.exceptions"
local json = require "lasgi.json"

local M = {}

local CONNECTING, CONNECTED, DISCONNECTED = "connecting", "connected", "disconnected"
M.CONNECTING, M.CONNECTED, M.DISCONNECTED = CONNECTING, CONNECTED, DISCONNECTED

---@class lasgi.WebSocket
---@field scope table
---@field client_state string "connecting" | "connected" | "disconnected"
---@field application_state string "connecting" | "connected" | "disconnected"
local WebSocket = { __name = "lasgi.WebSocket" }
WebSocket.__index = request_mod.index(WebSocket)
M.WebSocket = WebSocket

---@param scope table a "websocket" scope
---@param receive function
---@param send function
---@return lasgi.WebSocket
function M.new(scope, receive, send)
  if type(scope) ~= "table" or scope.type ~= "websocket" then
    error("WebSocket: argument 'scope' must be a websocket scope", 2)
  end
  return setmetatable({ scope = scope, _receive = receive, _send = send,
                        client_state = CONNECTING, application_state = CONNECTING }, WebSocket)
end

---Receives the next raw event, tracking the connection state.
---@return table
function WebSocket:receive()
  if self.client_state == DISCONNECTED then
    error("WebSocket:receive: the client is disconnected", 2)
  end
  local ev = self._receive()
  if ev.type == "websocket.connect" then
    if self.client_state ~= CONNECTING then error("WebSocket:receive: unexpected websocket.connect", 2) end
    self.client_state = CONNECTED
  elseif ev.type == "websocket.disconnect" then
    self.client_state = DISCONNECTED
  end
  return ev
end

---Sends a raw event; raises WebSocketDisconnect (1006) when the connection is gone.
---@param event table
function WebSocket:send(event)
  if self.application_state == DISCONNECTED then
    error("WebSocket:send: the connection is closed", 2)
  end
  local ok, err = self._send(event)
  if not ok and err == "disconnected" then
    self.application_state = DISCONNECTED
    error(exceptions.disconnect(1006, "disconnected"), 0)
  end
  local t = event.type
  if t == "websocket.accept" then
    self.application_state = CONNECTED
  elseif t == "websocket.close" or t == "websocket.http.response.body" and not event.more_body then
    self.application_state = DISCONNECTED
  end
  return true
end

---Accepts the connection (receiving websocket.connect first if needed).
---@param subprotocol? string
---@param headers? table list of { name, value } pairs
function WebSocket:accept(subprotocol, headers)
  if self.client_state == CONNECTING then
    local ev = self:receive()
    if ev.type ~= "websocket.connect" then
      error("WebSocket:accept: expected websocket.connect, got " .. tostring(ev.type), 2)
    end
  end
  if subprotocol ~= nil and type(subprotocol) ~= "string" then
    error("WebSocket:accept: argument 'subprotocol' must be a string", 2)
  end
  self:send({ type = "websocket.accept", subprotocol = subprotocol, headers = headers or {} })
end

local function expect_message(self, fname)
  if self.application_state ~= CONNECTED then
    error(fname .. ": the connection is not accepted", 3)
  end
  local ev = self:receive()
  if ev.type == "websocket.disconnect" then
    error(exceptions.disconnect(ev.code or 1005, ev.reason), 0)
  end
  if ev.type ~= "websocket.receive" then error(fname .. ": unexpected event " .. tostring(ev.type), 3) end
  return ev
end

---The next text message; raises WebSocketDisconnect when the peer leaves.
---@return string
function WebSocket:receive_text()
  local ev = expect_message(self, "WebSocket:receive_text")
  if ev.text == nil then error("WebSocket:receive_text: received a binary message", 2) end
  return ev.text
end

---The next binary message; raises WebSocketDisconnect when the peer leaves.
---@return string
function WebSocket:receive_bytes()
  local ev = expect_message(self, "WebSocket:receive_bytes")
  if ev.bytes == nil then error("WebSocket:receive_bytes: received a text message", 2) end
  return ev.bytes
end

---The next message (text or binary) decoded as JSON; invalid JSON closes with 1007 (WebSocketException).
---@return any
function WebSocket:receive_json()
  local ev = expect_message(self, "WebSocket:receive_json")
  local v, err = json.decode(ev.text or ev.bytes)
  if v == nil then error(exceptions.websocket(1007, "invalid JSON: " .. tostring(err)), 0) end
  return v
end

---@param text string
function WebSocket:send_text(text)
  if type(text) ~= "string" then error("WebSocket:send_text: argument 'text' must be a string", 2) end
  return self:send({ type = "websocket.send", text = text })
end

---@param data string
function WebSocket:send_bytes(data)
  if type(data) ~= "string" then error("WebSocket:send_bytes: argument 'data' must be a string", 2) end
  return self:send({ type = "websocket.send", bytes = data })
end

---Sends a value as JSON, in a text message (or binary with mode "binary").
---@param value any
---@param mode? string "text" (default) | "binary"
function WebSocket:send_json(value, mode)
  local text = json.encode(value)
  if mode == "binary" then return self:send({ type = "websocket.send", bytes = text }) end
  return self:send({ type = "websocket.send", text = text })
end

---Closes the connection (before accept, this rejects it: the server answers 403).
---@param code? integer default 1000
---@param reason? string
function WebSocket:close(code, reason)
  if self.application_state == DISCONNECTED then return end
  self:send({ type = "websocket.close", code = code or 1000, reason = reason or "" })
end

---Rejects the upgrade with a real HTTP response when the server offers `websocket.http.response`
---(else closes, which the server turns into a 403).
---@param response table a lasgi response
function WebSocket:deny(response)
  if self.client_state == CONNECTING then self:receive() end
  local ext = self.scope.extensions
  if ext and ext["websocket.http.response"] then
    response(self.scope, self._receive, function(ev) return self:send(ev) end)
  else
    self:close(1000)
  end
end

-- Iterator over `method(self)`'s results that ends (returns nil) when the peer disconnects.
local function iterator(self, method)
  return function()
    local ok, a, b = pcall(method, self)
    if ok then return a, b end
    if exceptions.is(a, exceptions.WebSocketDisconnect) then return nil end
    error(a, 0)
  end
end

---Iterator over text messages, ending when the peer disconnects.
function WebSocket:iter_text() return iterator(self, WebSocket.receive_text) end
---Iterator over binary messages, ending when the peer disconnects.
function WebSocket:iter_bytes() return iterator(self, WebSocket.receive_bytes) end
---Iterator over JSON messages, ending when the peer disconnects.
function WebSocket:iter_json() return iterator(self, WebSocket.receive_json) end

---Iterator over messages as (text, bytes): exactly one is non-nil; ends when the peer disconnects.
function WebSocket:messages()
  return iterator(self, function(ws)
    local ev = expect_message(ws, "WebSocket:messages")
    return ev.text or false, ev.bytes
  end)
end

---Runs `endpoint(ws)`: a disconnect ends it quietly, a WebSocketException closes with its code, and any
---other error closes with 1011 (or rejects, before accept) and is raised again.
---@param endpoint fun(ws: lasgi.WebSocket)
function WebSocket:run(endpoint)
  local ok, err = xpcall(endpoint, exceptions.traceback, self)
  if ok then return end
  if exceptions.is(err, exceptions.WebSocketDisconnect) then return end
  local app_open = self.application_state ~= DISCONNECTED
  if exceptions.is(err, exceptions.WebSocketException) then
    if app_open then pcall(self.close, self, err.code, err.reason) end
    return
  end
  if app_open then
    if self.client_state == CONNECTING then pcall(self.receive, self) end
    pcall(self.close, self, self.application_state == CONNECTED and 1011 or 1000)
  end
  error(err, 0)
end

return M
