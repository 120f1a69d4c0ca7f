-- App: a Router with middleware, exception handlers, lifespan and app-wide state, as one LASGI app.
local routing = require "lasgi.routing"
local errors_mw = require "lasgi.middleware.errors"
local exceptions_mw = require "lasgi.middleware.exceptions"

local M = {}

---@class lasgi.App
---@field router lasgi.Router
---@field state table app-wide state (a plain table shared by every request: request.app.state)
---@field debug boolean
local App = { __name = "lasgi.App" }
App.__index = App
M.App = App

---Creates an app. opts: routes, middleware (list, outermost first, of function(app) -> app or
---{ middleware, opts }), exception_handlers (status or error class -> function(request, err) -> response;
---the key 500 handles unexpected errors), debug (traceback page on 500), on_startup, on_shutdown, lifespan
---(see lasgi.lifespan), max_body_size (1 MiB), max_form_size (64 MiB), redirect_slashes (true).
---@param opts? table
---@return lasgi.App
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("App: argument 'opts' must be a table", 2) end
  local self = setmetatable({
    debug = opts.debug == true,
    state = opts.state or {},
    exception_handlers = opts.exception_handlers or {},
    user_middleware = opts.middleware or {},
    max_body_size = opts.max_body_size,
    max_form_size = opts.max_form_size,
  }, App)
  self.router = routing.router({
    routes = opts.routes or {},
    redirect_slashes = opts.redirect_slashes,
    on_startup = opts.on_startup,
    on_shutdown = opts.on_shutdown,
    lifespan = opts.lifespan,
  })
  for i, m in ipairs(self.user_middleware) do
    if type(m) ~= "function" and (type(m) ~= "table" or m[1] == nil) then
      error(("App: middleware[%d] must be a function(app) or { middleware, opts }"):format(i), 2)
    end
  end
  return self
end

function App:build()
  local handlers = {}
  local error_handler
  for k, v in pairs(self.exception_handlers) do
    if k == 500 then error_handler = v else handlers[k] = v end
  end
  local app = exceptions_mw.new(self.router, handlers)
  for i = #self.user_middleware, 1, -1 do
    local m = self.user_middleware[i]
    if type(m) == "function" then app = m(app) else app = m[1](app, m[2]) end
  end
  return errors_mw.new(app, { debug = self.debug, handler = error_handler })
end

function App:__call(scope, receive, send)
  scope.app = self
  if not self.stack then self.stack = self:build() end
  return self.stack(scope, receive, send)
end

---Adds a route (see routing.route); call before the first request.
function App:route(path, endpoint, opts) self.router:add_route(path, endpoint, opts); return self end
---Adds a WebSocket route (see routing.websocket_route).
function App:websocket_route(path, endpoint, opts)
  self.router:add_websocket_route(path, endpoint, opts)
  return self
end
---Mounts an app (see routing.mount).
function App:mount(path, app, opts) self.router:mount(path, app, opts); return self end

---Shortcuts: app:get(path, fn), app:post(path, fn), ...
for _, m in ipairs({ "get", "post", "put", "patch", "delete" }) do
  App[m] = function(self, path, endpoint, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.methods = { m:upper() }
    return self:route(path, endpoint, o)
  end
end

---Adds middleware (outermost last added); call before the first request.
function App:add_middleware(mw, opts)
  if self.stack then error("App:add_middleware: the app has already started", 2) end
  table.insert(self.user_middleware, 1, opts ~= nil and { mw, opts } or (type(mw) == "function" and mw or { mw }))
  return self
end

---Path of a named route (see Router:url_path_for).
function App:url_path_for(name, params) return self.router:url_path_for(name, params) end

return M
