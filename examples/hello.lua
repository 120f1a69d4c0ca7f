-- The smallest LASGI app: `lua5.4 bin/luvicorn examples/hello.lua` (what `make run` serves).
local function app(scope, _, send)
  if scope.type ~= "http" then error("unsupported scope type " .. scope.type) end
  send({ type = "http.response.start", status = 200, headers = { { "content-type", "text/plain" } } })
  send({ type = "http.response.body", body = "Hello, world!" })
end

return app
