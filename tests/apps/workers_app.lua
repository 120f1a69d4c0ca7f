-- The app of tests/test_workers.py: answers with the worker's pid, and has routes that hang, stream
-- slowly, or crash the process.
local uv = require("luvicorn.loop")
local co = require("luvrs.co")

local pid = tostring(math.tointeger(uv.os_getpid()) or uv.os_getpid())

if os.getenv("WORKERS_APP_FAIL") then error("this app refuses to load (WORKERS_APP_FAIL is set)") end

return function(scope, _, send)
  if scope.type ~= "http" then return end
  if scope.path == "/hang" then
    -- a busy loop: the event loop never runs again, so the worker stops answering the health check
    while true do end -- luacheck: ignore 512
  end
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
  if scope.path == "/slow" then
    -- a streamed response that takes a second
    for i = 1, 5 do
      send({ type = "http.response.body", body = "part " .. i .. " from " .. pid .. "\n", more_body = true })
      co.sleep(200)
    end
    send({ type = "http.response.body", body = "done\n" })
    return
  end
  send({ type = "http.response.body", body = pid })
end
