-- Fetches URLs concurrently with luvrs.co.http and prints what came back.
--
--   lua5.4 examples/fetch.lua URL [URL ...]      one URL: its body on stdout; several: a summary line each
--
-- URLs: http://host[:port]/path or http+unix://%2Fpath%2Fto.sock/path. Runs on luvrs when it is built
-- (LUA_CPATH='./build/?.so;;'), else on the real luv:
--   LUA_PATH='./lua/?.lua;;' LUA_CPATH='./build/?.so;;' lua5.4 examples/fetch.lua http://127.0.0.1:8000/
local co = require "luvrs.co"
local http = require "luvrs.co.http"

local urls = { ... }
if #urls == 0 then
  io.stderr:write("usage: lua5.4 examples/fetch.lua URL [URL ...]\n")
  os.exit(2)
end

local failed = co.run(function()
  local uv = co.loop()
  local tasks = {}
  for i, url in ipairs(urls) do
    tasks[i] = co.spawn(function()
      local t0 = uv.hrtime()
      local ok, status, headers, body = pcall(http.request, { url = url, redirects = 5, timeout = 10000 })
      if not ok then return nil, status end -- a URL the client cannot use
      return status, headers, body, (uv.hrtime() - t0) / 1e6
    end)
  end
  local results = co.wait_all(tasks)
  local bad = 0
  for i, r in ipairs(results) do
    local _, status, headers, body, ms = table.unpack(r, 1, r.n)
    if not status then
      bad = bad + 1
      io.stderr:write(("%s: error: %s\n"):format(urls[i], tostring(headers)))
    elseif #urls == 1 then
      io.stdout:write(body)
    else
      io.stdout:write(("%s: %d, %d bytes, %s, %.1f ms\n"):format(urls[i], status, #body,
        headers["content-type"] or "no content-type", ms))
    end
  end
  require("luvrs.co.pool").default:close()
  return bad
end)

os.exit(failed == 0 and 0 or 1)
