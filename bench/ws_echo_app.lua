-- The app the WebSocket echo benchmark serves (proposed path: bench/ws_echo_app.lua).
return function(scope, receive, send)
  if scope.type ~= "websocket" then error("unsupported scope type " .. scope.type) end
  receive()
  send({ type = "websocket.accept" })
  while true do
    local ev = receive()
    if ev.type == "websocket.disconnect" then return end
    send({ type = "websocket.send", text = ev.text, bytes = ev.bytes })
  end
end
