-- lasgi: a Starlette-like toolkit for LASGI apps. This module re-exports the public API.
local applications = require "lasgi.applications"
local routing = require "lasgi.routing"
local responses = require "lasgi.responses"
local request = require "lasgi.request"
local websockets = require "lasgi.websockets"
local exceptions = require "lasgi.exceptions"
local datastructures = require "lasgi.datastructures"
local staticfiles = require "lasgi.staticfiles"
local lifespan = require "lasgi.lifespan"
local json = require "lasgi.json"

local M = {
  _VERSION = "0.1.0",

  App = applications.new,
  Router = routing.router,
  Route = routing.route,
  WebSocketRoute = routing.websocket_route,
  Mount = routing.mount,

  Request = request.new,
  WebSocket = websockets.new,
  WebSocketDisconnect = exceptions.WebSocketDisconnect,

  Response = responses.response,
  PlainTextResponse = responses.text,
  HTMLResponse = responses.html,
  JSONResponse = responses.json,
  RedirectResponse = responses.redirect,
  StreamingResponse = responses.streaming,
  FileResponse = responses.file,

  HTTPException = exceptions.http,
  WebSocketException = exceptions.websocket,

  StaticFiles = staticfiles.new,
  Headers = datastructures.headers,
  QueryParams = datastructures.query_params,
  URL = datastructures.url,

  lifespan = lifespan,
  json = json,
  exceptions = exceptions,
  responses = responses,
  routing = routing,
  datastructures = datastructures,
}

local lazy = {
  middleware = function()
    return {
      CORS = require "lasgi.middleware.cors",
      GZip = require "lasgi.middleware.gzip",
      TrustedHost = require "lasgi.middleware.trustedhost",
      HTTPSRedirect = require "lasgi.middleware.httpsredirect",
      ServerErrors = require "lasgi.middleware.errors",
      Exceptions = require "lasgi.middleware.exceptions",
    }
  end,
  TestClient = function() return require("lasgi.testclient").new end,
}

return setmetatable(M, {
  __index = function(t, k)
    local f = lazy[k]
    if f then
      local v = f()
      rawset(t, k, v)
      return v
    end
    return nil
  end,
})
