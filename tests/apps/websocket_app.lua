-- The LASGI app that tests/test_websocket_e2e.py drives (proposed path: tests/apps/websocket_app.lua).
--   /echo          accept (with the last offered subprotocol, if any), echo every message;
--                  the text "close:<code>:<reason>" makes the app close with that code and reason
--   /reject        websocket.close before accept (HTTP 403)
--   /deny          websocket.http.response denial (HTTP 401 with a body)
--   /flood         accept, then send 1 MiB messages until the connection is gone
-- Plain HTTP requests get 200 "ok" (the port probe).
return function(scope, receive, send)
  if scope.type == "lifespan" then
    while true do
      local ev = receive()
      if ev.type == "lifespan.startup" then send({ type = "lifespan.startup.complete" })
      elseif ev.type == "lifespan.shutdown" then send({ type = "lifespan.shutdown.complete" }) return end
    end
  end
  if scope.type == "http" then
    send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
    send({ type = "http.response.body", body = "ok" })
    return
  end
  local ev = receive()
  assert(ev.type == "websocket.connect")
  if scope.path == "/reject" then
    send({ type = "websocket.close" })
    return
  elseif scope.path == "/deny" then
    send({ type = "websocket.http.response.start", status = 401, headers = { { "x-denied", "yes" } } })
    send({ type = "websocket.http.response.body", body = "no entry" })
    return
  end
  local offered = scope.subprotocols
  send({ type = "websocket.accept", subprotocol = offered[#offered], headers = { { "x-app", "websocket" } } })
  if scope.path == "/flood" then
    local chunk = string.rep("f", 1 << 20)
    while send({ type = "websocket.send", bytes = chunk }) do end
    return
  end
  while true do
    ev = receive()
    if ev.type == "websocket.disconnect" then
      io.stdout:write(("app saw disconnect %d\n"):format(ev.code))
      io.stdout:flush()
      return
    end
    local code, reason = (ev.text or ""):match("^close:(%d+):(.*)$")
    if code then
      send({ type = "websocket.close", code = tonumber(code), reason = reason })
    else
      send({ type = "websocket.send", text = ev.text, bytes = ev.bytes })
    end
  end
end
