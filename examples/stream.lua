-- A streamed response: ten lines, one every 200 ms (tune with ?n=COUNT&ms=DELAY), sent with chunked
-- encoding as they are produced. The waits use luvrs.co, which suspends only this request.
--   lua5.4 bin/luvicorn examples/stream.lua    then    curl -N http://127.0.0.1:8000/
local co = require("luvrs.co")

local function app(scope, _, send)
  if scope.type ~= "http" then error("unsupported scope type " .. scope.type) end
  local n = tonumber(scope.query_string:match("n=(%d+)")) or 10
  local ms = tonumber(scope.query_string:match("ms=(%d+)")) or 200
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain; charset=utf-8" } } })
  for i = 1, n do
    local ok = send({ type = "http.response.body", body = ("line %d of %d\n"):format(i, n), more_body = true })
    if not ok then return end -- the client went away
    if i < n then co.sleep(ms) end
  end
  send({ type = "http.response.body", body = "" })
end

return app
