-- Routing: Route, WebSocketRoute, Mount and Router (itself a LASGI app, lifespan included).
local convertors = require "lasgi.convertors"
local datastructures = require "lasgi.datastructures"
local exceptions = require "lasgi.exceptions"
local exceptions_mw = require "lasgi.middleware.exceptions"
local responses = require "lasgi.responses"
local request_mod = require "lasgi.request"
local lifespan = require "lasgi.lifespan"

local M = {}

local NONE, PARTIAL, FULL = 0, 1, 2
M.NONE, M.PARTIAL, M.FULL = NONE, PARTIAL, FULL

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

---The path relative to the mount point: scope.path without scope.root_path.
---@param scope table
---@return string
function M.route_path(scope)
  local path, root = scope.path or "/", scope.root_path or ""
  if root == "" or path:sub(1, #root) ~= root then return path end
  if #path == #root then return "" end
  if path:sub(#root + 1, #root + 1) == "/" then return path:sub(#root + 1) end
  return path
end

---Compiles a route path such as "/users/{id:int}/{rest:path}".
---@param path string
---@param tail? string a pattern appended before the end anchor (Mount uses it)
---@return table { pattern, names, convs, pieces }
function M.compile_path(path, tail)
  if type(path) ~= "string" then error("compile_path: argument 'path' must be a string", 2) end
  local pattern, names, convs, pieces = { "^" }, {}, {}, {}
  local pos = 1
  local seen = {}
  while true do
    local s, e, name, conv = path:find("{([%a_][%w_]*):?([%a_]*[%w_]*)}", pos)
    if not s then break end
    local literal = path:sub(pos, s - 1)
    pattern[#pattern + 1] = escape(literal)
    pieces[#pieces + 1] = literal
    conv = conv ~= "" and conv or "str"
    local c = convertors[conv]
    if type(c) ~= "table" or not c.pattern then
      error(("compile_path: unknown convertor '%s' in '%s'"):format(conv, path), 2)
    end
    if seen[name] then error(("compile_path: duplicate parameter '%s' in '%s'"):format(name, path), 2) end
    seen[name] = true
    pattern[#pattern + 1] = "(" .. c.pattern .. ")"
    names[#names + 1] = name
    convs[#convs + 1] = c
    pieces[#pieces + 1] = { name = name, conv = c }
    pos = e + 1
  end
  local literal = path:sub(pos)
  pattern[#pattern + 1] = escape(literal)
  pieces[#pieces + 1] = literal
  if tail then pattern[#pattern + 1] = tail end
  pattern[#pattern + 1] = "$"
  return { pattern = table.concat(pattern), names = names, convs = convs, pieces = pieces, path = path }
end

-- Converts the captures of a match into path_params merged over the scope's (a Mount's params reach its
-- routes); returns them plus the tail capture, or nil. The router tries every route on every request,
-- so a path that does not match allocates nothing.
local function convert_captures(compiled, scope, first, ...)
  if first == nil then return nil end
  local caps = { first, ... }
  local params = {}
  for k, v in pairs(scope.path_params or {}) do params[k] = v end
  for i, name in ipairs(compiled.names) do
    local v = compiled.convs[i].convert(caps[i])
    if v == nil then return nil end
    params[name] = v
  end
  return params, caps[#compiled.names + 1]
end

-- Matches the scope's route path against a compiled path: see convert_captures.
local function match_compiled(compiled, scope, path)
  return convert_captures(compiled, scope, path:match(compiled.pattern))
end

-- Fills a compiled path with params; returns the path, or nil if a parameter is missing.
local function format_compiled(compiled, params)
  local out = {}
  for _, p in ipairs(compiled.pieces) do
    if type(p) == "string" then
      out[#out + 1] = p
    else
      local v = params[p.name]
      if v == nil then return nil end
      local ok, s = pcall(p.conv.to_string, v)
      if not ok then error(("url_path_for: parameter '%s': %s"):format(p.name, s), 0) end
      out[#out + 1] = datastructures.quote(s, p.conv == convertors.path and "/" or "")
    end
  end
  return table.concat(out)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

local function is_callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

---Answers with `status` (its reason phrase as a text body), or raises it as an HTTPException when an App
---or the Exceptions middleware up the chain turns those into responses, so that its handlers decide.
---@param scope table
---@param receive function
---@param send function
---@param status integer
---@param headers? table list of { name, value } pairs
function M.http_error(scope, receive, send, status, headers)
  local err = exceptions.http(status, nil, headers)
  if exceptions.handled(scope) then error(err, 0) end
  return exceptions_mw.http_exception_response(err)(scope, receive, send)
end

local function to_response(result)
  if responses.is_response(result) then return result end
  if type(result) == "string" then return responses.text(result) end
  if type(result) == "table" and getmetatable(result) == nil then return responses.json(result) end
  error(("Route: the endpoint returned %s, not a response"):format(type(result)), 0)
end

-- Sends what an endpoint returned (a top-level function: pcall needs no closure per request).
local function respond(result, scope, receive, send)
  to_response(result)(scope, receive, send)
end

---Turns an endpoint `function(request) -> response` into a LASGI app. The endpoint may return a
---Response, a string (text/plain) or a plain table (JSON).
---@param endpoint function
---@return function
function M.request_response(endpoint)
  return function(scope, receive, send)
    local req = request_mod.new(scope, receive, send)
    local started = false
    local function tracked(ev)
      if ev.type == "http.response.start" then started = true end
      return send(ev)
    end
    local ok, result = pcall(endpoint, req)
    if ok then
      ok, result = pcall(respond, result, scope, receive, tracked)
    end
    req:close()
    if ok then return end
    -- Outside an App (a bare Router), HTTPException still becomes its response; inside one, the App's
    -- exception handlers decide.
    if not exceptions.handled(scope) and not started and exceptions.is(result, exceptions.HTTPException) then
      return exceptions_mw.http_exception_response(result)(scope, receive, send)
    end
    error(result, 0)
  end
end

local function method_not_allowed(scope, receive, send, allow)
  return M.http_error(scope, receive, send, 405, { { "allow", allow } })
end

-- Route -------------------------------------------------------------------------------------------

---@class lasgi.Route
local Route = { __name = "lasgi.Route" }
Route.__index = Route
M.Route = Route

---An HTTP route. `endpoint` is a function(request) -> response, or a LASGI app: any callable table, or
---a function when opts.lasgi is true.
---opts: methods (default {"GET"} for endpoints, any for LASGI apps; HEAD follows GET), name.
---@param path string
---@param endpoint function|table
---@param opts? table
---@return lasgi.Route
function M.route(path, endpoint, opts)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then error("Route: argument 'path' must start with '/'", 2) end
  if not is_callable(endpoint) then error("Route: argument 'endpoint' must be callable", 2) end
  opts = opts or {}
  local self = setmetatable({ path = path, endpoint = endpoint, name = opts.name,
                              compiled = M.compile_path(path) }, Route)
  local plain = type(endpoint) == "function" and not opts.lasgi
  self.app = plain and M.request_response(endpoint) or endpoint
  local methods = opts.methods
  if methods == nil and plain then methods = { "GET" } end
  if methods then
    self.methods, self.method_list = {}, {}
    for _, m in ipairs(methods) do
      m = tostring(m):upper()
      if not self.methods[m] then self.methods[m] = true; self.method_list[#self.method_list + 1] = m end
    end
    if self.methods.GET and not self.methods.HEAD then
      self.methods.HEAD = true
      self.method_list[#self.method_list + 1] = "HEAD"
    end
  end
  return self
end

function Route:matches(scope)
  if scope.type ~= "http" then return NONE end
  local params = match_compiled(self.compiled, scope, M.route_path(scope))
  if not params then return NONE end
  local child = { endpoint = self.endpoint, path_params = params }
  if self.methods and not self.methods[scope.method] then return PARTIAL, child end
  return FULL, child
end

function Route:handle(scope, receive, send)
  if self.methods and not self.methods[scope.method] then
    return method_not_allowed(scope, receive, send, table.concat(self.method_list, ", "))
  end
  return self.app(scope, receive, send)
end

function Route:url_path_for(name, params)
  if name ~= self.name then return nil end
  for k in pairs(params) do
    if not self:has_param(k) then return nil end
  end
  return format_compiled(self.compiled, params)
end

function Route:has_param(k)
  for _, n in ipairs(self.compiled.names) do
    if n == k then return true end
  end
  return false
end

-- WebSocketRoute ----------------------------------------------------------------------------------

local WebSocketRoute = { __name = "lasgi.WebSocketRoute" }
WebSocketRoute.__index = WebSocketRoute
WebSocketRoute.url_path_for = Route.url_path_for
WebSocketRoute.has_param = Route.has_param
M.WebSocketRoute = WebSocketRoute

---A WebSocket route. `endpoint` is a function(websocket) (a lasgi.WebSocket session), or a LASGI app
---(a callable table, or a function with opts.lasgi = true). opts: name.
---@param path string
---@param endpoint function|table
---@param opts? table
---@return table
function M.websocket_route(path, endpoint, opts)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("WebSocketRoute: argument 'path' must start with '/'", 2)
  end
  if not is_callable(endpoint) then error("WebSocketRoute: argument 'endpoint' must be callable", 2) end
  opts = opts or {}
  local self = setmetatable({ path = path, endpoint = endpoint, name = opts.name,
                              compiled = M.compile_path(path) }, WebSocketRoute)
  if type(endpoint) == "function" and not opts.lasgi then
    self.app = function(scope, receive, send)
      local ws = require("lasgi.websockets").new(scope, receive, send)
      ws:run(endpoint)
    end
  else
    self.app = endpoint
  end
  return self
end

function WebSocketRoute:matches(scope)
  if scope.type ~= "websocket" then return NONE end
  local params = match_compiled(self.compiled, scope, M.route_path(scope))
  if not params then return NONE end
  return FULL, { endpoint = self.endpoint, path_params = params }
end

function WebSocketRoute:handle(scope, receive, send)
  return self.app(scope, receive, send)
end

-- Mount -------------------------------------------------------------------------------------------

local Mount = { __name = "lasgi.Mount" }
Mount.__index = Mount
M.Mount = Mount

---Mounts a LASGI app (or a list of routes, which become a Router) under a path prefix. The mounted app
---sees root_path extended by the prefix; scope.path keeps the full path. opts: name, routes.
---@param path string "" or a prefix starting with "/", without trailing slash
---@param app? table|function
---@param opts? table
---@return table
function M.mount(path, app, opts)
  if type(path) ~= "string" or (path ~= "" and path:sub(1, 1) ~= "/") then
    error("Mount: argument 'path' must be '' or start with '/'", 2)
  end
  opts = opts or {}
  path = path:gsub("/$", "")
  if type(app) == "table" and getmetatable(app) == nil then
    app = M.router({ routes = app })
  elseif app == nil and opts.routes then
    app = M.router({ routes = opts.routes })
  end
  if not is_callable(app) then error("Mount: argument 'app' must be a LASGI app or a list of routes", 2) end
  return setmetatable({ path = path, app = app, name = opts.name,
                        compiled = M.compile_path(path, "(/.*)") }, Mount)
end

function Mount:matches(scope)
  if scope.type ~= "http" and scope.type ~= "websocket" then return NONE end
  local rp = M.route_path(scope)
  local params, remaining = match_compiled(self.compiled, scope, rp)
  if not params then return NONE end
  local matched = rp:sub(1, #rp - #remaining)
  local root = scope.root_path or ""
  return FULL, {
    path_params = params,
    app_root_path = scope.app_root_path or root,
    root_path = root .. matched,
    endpoint = self.app,
  }
end

function Mount:handle(scope, receive, send)
  return self.app(scope, receive, send)
end

function Mount:url_path_for(name, params)
  local own, rest = {}, {}
  for k, v in pairs(params) do
    if k ~= "path" and self:has_param(k) then own[k] = v else rest[k] = v end
  end
  if self.name and name == self.name and params.path ~= nil then
    local prefix = format_compiled(self.compiled, own)
    if not prefix then return nil end
    local p = tostring(params.path)
    if p:sub(1, 1) ~= "/" then p = "/" .. p end
    for k in pairs(rest) do
      if k ~= "path" then return nil end
    end
    return prefix .. datastructures.quote(p, "/")
  end
  local child_name
  if self.name == nil then
    child_name = name
  elseif name:sub(1, #self.name + 1) == self.name .. ":" then
    child_name = name:sub(#self.name + 2)
  else
    return nil
  end
  local child = self.app
  if type(child) ~= "table" or type(child.find_path) ~= "function" then return nil end
  local sub = child:find_path(child_name, rest)
  if not sub then return nil end
  local prefix = format_compiled(self.compiled, own)
  if not prefix then return nil end
  return prefix .. sub
end

Mount.has_param = Route.has_param

-- Router ------------------------------------------------------------------------------------------

---@class lasgi.Router
---@field routes table
local Router = { __name = "lasgi.Router" }
Router.__index = Router
M.Router = Router

local function not_found(scope, receive, send)
  if scope.type == "websocket" then
    send({ type = "websocket.close", code = 1000, reason = "" })
    return
  end
  return M.http_error(scope, receive, send, 404)
end

---A Router: a LASGI app that dispatches to the first matching route. Accepts a list of routes or
---options: routes, redirect_slashes (default true: "/a/" <-> "/a" with a 307 when only the slash differs),
---default (app for unmatched requests: 404), on_startup / on_shutdown (lists of functions(state)),
---lifespan (function(app, state, yield): code before yield() runs at startup, after it at shutdown).
---@param opts table
---@return lasgi.Router
function M.router(opts)
  if type(opts) ~= "table" then error("Router: argument 'opts' must be a table", 2) end
  if opts[1] ~= nil or next(opts) == nil then opts = { routes = opts } end
  local self = setmetatable({
    routes = {},
    redirect_slashes = opts.redirect_slashes ~= false,
    default = opts.default or not_found,
    on_startup = opts.on_startup and copy(opts.on_startup),
    on_shutdown = opts.on_shutdown and copy(opts.on_shutdown),
    lifespan_fn = opts.lifespan,
  }, Router)
  if opts.lifespan and (opts.on_startup or opts.on_shutdown) then
    error("Router: use either 'lifespan' or 'on_startup'/'on_shutdown', not both", 2)
  end
  for i, r in ipairs(opts.routes or {}) do
    if type(r) ~= "table" or type(r.matches) ~= "function" then
      error(("Router: routes[%d] is not a route (use Route, WebSocketRoute or Mount)"):format(i), 2)
    end
    self.routes[i] = r
  end
  return self
end

---Adds an HTTP route; see M.route.
function Router:add_route(path, endpoint, opts)
  self.routes[#self.routes + 1] = M.route(path, endpoint, opts)
  return self
end

---Adds a WebSocket route; see M.websocket_route.
function Router:add_websocket_route(path, endpoint, opts)
  self.routes[#self.routes + 1] = M.websocket_route(path, endpoint, opts)
  return self
end

---Mounts an app; see M.mount.
function Router:mount(path, app, opts)
  self.routes[#self.routes + 1] = M.mount(path, app, opts)
  return self
end

---Path of the route named `name` with `params`, or nil.
---@param name string
---@param params? table
---@return string|nil
function Router:find_path(name, params)
  for _, r in ipairs(self.routes) do
    if r.url_path_for then
      local p = r:url_path_for(name, params or {})
      if p then return p end
    end
  end
  return nil
end

---Path of the route named `name` (Mount names nest as "mount:route"); raises when none matches.
---@param name string
---@param params? table
---@return string
function Router:url_path_for(name, params)
  if type(name) ~= "string" then error("url_path_for: argument 'name' must be a string", 2) end
  if params ~= nil and type(params) ~= "table" then error("url_path_for: argument 'params' must be a table", 2) end
  local p = self:find_path(name, params or {})
  if not p then error(("url_path_for: no route named '%s' with these parameters"):format(name), 2) end
  return p
end

---Runs the lifespan protocol with the router's hooks (see lasgi.lifespan).
function Router:lifespan(scope, receive, send)
  return lifespan.run(scope, receive, send, {
    on_startup = self.on_startup, on_shutdown = self.on_shutdown, lifespan = self.lifespan_fn,
    app = scope.app or self,
  })
end

local function merge(scope, child)
  for k, v in pairs(child) do scope[k] = v end
end

function Router:__call(scope, receive, send)
  local t = scope.type
  if t ~= "http" and t ~= "websocket" and t ~= "lifespan" then
    error("Router: unsupported scope type " .. tostring(t), 0)
  end
  if scope.router == nil then scope.router = self end
  if t == "lifespan" then return self:lifespan(scope, receive, send) end
  local partial, partial_child, allow, allowed
  for _, r in ipairs(self.routes) do
    local m, child = r:matches(scope)
    if m == FULL then
      merge(scope, child)
      return r:handle(scope, receive, send)
    elseif m == PARTIAL then
      if not partial then partial, partial_child, allow, allowed = r, child, {}, {} end
      -- Allow lists the methods of every route at this path, not only the first one's.
      for _, method in ipairs(r.method_list or {}) do
        if not allowed[method] then allowed[method] = true; allow[#allow + 1] = method end
      end
    end
  end
  if partial then
    merge(scope, partial_child)
    if #allow > 0 then return method_not_allowed(scope, receive, send, table.concat(allow, ", ")) end
    return partial:handle(scope, receive, send)
  end
  local rp = M.route_path(scope)
  if t == "http" and self.redirect_slashes and rp ~= "/" and rp ~= "" then
    local other = copy(scope)
    if rp:sub(-1) == "/" then other.path = scope.path:sub(1, -2) else other.path = scope.path .. "/" end
    for _, r in ipairs(self.routes) do
      if r:matches(other) ~= NONE then
        local url = datastructures.url_from_scope(scope)
        if url.path:sub(-1) == "/" then url.path = url.path:sub(1, -2) else url.path = url.path .. "/" end
        return responses.redirect(tostring(url), 307)(scope, receive, send)
      end
    end
  end
  return self.default(scope, receive, send)
end

return M
