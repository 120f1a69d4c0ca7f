-- The LASGI app that tests/test_nginx.py runs behind nginx, twice (a TCP and a Unix-socket instance).
-- Every answer names the instance (NGINX_APP_NAME from the environment, and the process id) and what
-- the app saw of the client, so the test can tell which upstream nginx chose and whether the proxy
-- headers were believed.
--   GET /            a JSON object: name, pid, client, scheme, server, and the xff (X-Forwarded-For) and
--                    forwarded (Forwarded) headers as received
--   GET /slow?ms=N   the same after N milliseconds (a request still running when the instance stops)
--   WebSocket /ws    the text "whoami" gets the JSON object; any other message is echoed. The app
--                    prints "NAME saw disconnect CODE" on stdout when the client closes.
local uv = require("luvicorn.loop")
local co = require("luvrs.co")

local NAME = os.getenv("NGINX_APP_NAME") or "unnamed"
local PID = math.tointeger(uv.os_getpid()) or uv.os_getpid()

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\" }

local function json_string(s)
  if s == nil then return "null" end
  s = tostring(s):gsub('[%c"\\]', function(c) return ESCAPES[c] or ("\\u%04x"):format(c:byte()) end)
  return '"' .. s .. '"'
end

local function header(scope, name)
  local found
  for _, h in ipairs(scope.headers) do
    if h[1] == name then found = found and (found .. ", " .. h[2]) or h[2] end
  end
  return found
end

local function identity(scope)
  local client = scope.client or {}
  local server = scope.server or {}
  return ('{"name":%s,"pid":%d,"client":%s,"scheme":%s,"server":%s,"xff":%s,"forwarded":%s}'):format(
    json_string(NAME), PID, json_string(client[1]), json_string(scope.scheme), json_string(server[1]),
    json_string(header(scope, "x-forwarded-for")), json_string(header(scope, "forwarded")))
end

local function lifespan(receive, send)
  while true do
    local ev = receive()
    if ev.type == "lifespan.startup" then
      send({ type = "lifespan.startup.complete" })
    elseif ev.type == "lifespan.shutdown" then
      send({ type = "lifespan.shutdown.complete" })
      return
    end
  end
end

local function websocket(scope, receive, send)
  assert(receive().type == "websocket.connect")
  send({ type = "websocket.accept" })
  while true do
    local ev = receive()
    if ev.type == "websocket.disconnect" then
      io.stdout:write(("%s saw disconnect %d\n"):format(NAME, ev.code))
      io.stdout:flush()
      return
    end
    if ev.text == "whoami" then
      send({ type = "websocket.send", text = identity(scope) })
    else
      send({ type = "websocket.send", text = ev.text, bytes = ev.bytes })
    end
  end
end

return function(scope, receive, send)
  if scope.type == "lifespan" then return lifespan(receive, send) end
  if scope.type == "websocket" then return websocket(scope, receive, send) end
  if scope.path == "/slow" then co.sleep(tonumber(scope.query_string:match("ms=(%d+)")) or 100) end
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "application/json" } } })
  send({ type = "http.response.body", body = identity(scope) })
end
