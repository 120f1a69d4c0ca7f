-- Request: an HTTP request read from a LASGI scope and receive function.
-- Properties are computed on first use and cached: method, url, base_url, headers, query_params,
-- path_params, cookies, client, state, app, scope.
local datastructures = require "lasgi.datastructures"
local cookies = require "lasgi.cookies"
local json = require "lasgi.json"
local formparsers = require "lasgi.formparsers"
local exceptions = require "lasgi.exceptions"

local M = {}

M.default_max_body_size = 1024 * 1024
M.default_max_form_size = 64 * 1024 * 1024

local getters = {}
M.getters = getters

function getters.method(self) return self.scope.method end
function getters.url(self) return datastructures.url_from_scope(self.scope) end
function getters.headers(self) return datastructures.scope_headers(self.scope.headers) end
function getters.query_params(self) return datastructures.query_params(self.scope.query_string or "") end
function getters.path_params(self) return self.scope.path_params or {} end
function getters.cookies(self) return cookies.parse(self.headers:get("cookie")) end
function getters.app(self) return self.scope.app end
function getters.client(self)
  local c = self.scope.client
  if c then return { host = c[1], port = c[2] } end
  return nil
end
function getters.state(self)
  local st = self.scope.state
  if not st then st = {}; self.scope.state = st end
  return st
end
function getters.base_url(self)
  local root = self.scope.app_root_path or self.scope.root_path or ""
  if root:sub(-1) ~= "/" then root = root .. "/" end
  return self.url:replace({ path = root, query = "", fragment = "" })
end

---Builds the __index of a connection class: methods first, then the lazy properties.
---@param methods table
---@return function
function M.index(methods)
  return function(self, k)
    local m = methods[k]
    if m ~= nil then return m end
    local g = getters[k]
    if g then
      local v = g(self)
      rawset(self, k, v)
      return v
    end
    return nil
  end
end

---@class lasgi.Request
---@field scope table
---@field method string
---@field url lasgi.URL
---@field headers lasgi.Headers
---@field query_params lasgi.QueryParams
---@field path_params table
---@field cookies table<string,string>
---@field client table|nil { host, port }
---@field state table
local Request = { __name = "lasgi.Request" }
Request.__index = M.index(Request)
M.Request = Request

---@param scope table an "http" scope
---@param receive? function
---@param send? function
---@return lasgi.Request
function M.new(scope, receive, send)
  if type(scope) ~= "table" or scope.type ~= "http" then
    error("Request: argument 'scope' must be an http scope", 2)
  end
  return setmetatable({ scope = scope, _receive = receive, _send = send }, Request)
end

local function limit(self, opts, field, default)
  if opts and opts.max_size ~= nil then return opts.max_size end
  local app = self.scope.app
  if type(app) == "table" and app[field] ~= nil then return app[field] end
  return default
end

local function too_large(max)
  error(exceptions.http(413, ("Request body exceeds %d bytes"):format(max)), 0)
end

---Iterator over the body's chunks, as they arrive. Raises HTTPException(413) past `opts.max_size`
---(default: app.max_body_size or 1 MiB; math.huge for no limit) and ClientDisconnect if the client leaves.
---@param opts? table
---@return fun(): string|nil
function Request:stream(opts)
  if self._body then
    local done = false
    return function()
      if done then return nil end
      done = true
      return self._body
    end
  end
  if self._consumed then error("Request:stream: the body was already consumed", 2) end
  if not self._receive then error("Request:stream: this request has no receive function", 2) end
  self._consumed = true
  local max = limit(self, opts, "max_body_size", M.default_max_body_size)
  local declared = tonumber(self.headers:get("content-length"))
  if declared and declared > max then too_large(max) end
  local size, finished = 0, false
  return function()
    while not finished do
      local ev = self._receive()
      if ev.type == "http.request" then
        local body = ev.body or ""
        finished = not ev.more_body
        size = size + #body
        if size > max then too_large(max) end
        if body ~= "" then return body end
      elseif ev.type == "http.disconnect" then
        finished = true
        self.disconnected = true
        error(exceptions.client_disconnect(), 0)
      end
    end
    return nil
  end
end

---The whole body (read once, then cached).
---@param opts? table max_size
---@return string
function Request:body(opts)
  if self._body then return self._body end
  local chunks = {}
  for chunk in self:stream(opts) do chunks[#chunks + 1] = chunk end
  self._body = table.concat(chunks)
  return self._body
end

---The body as text (the charset is not converted: Lua strings are bytes).
---@param opts? table
---@return string
function Request:text(opts)
  return self:body(opts)
end

---The body decoded as JSON; HTTPException(400) when it is not valid JSON. Null is json.null.
---@param opts? table
---@return any
function Request:json(opts)
  if self._json == nil then
    local v, err = json.decode(self:body(opts))
    if v == nil then error(exceptions.http(400, "Invalid JSON body: " .. tostring(err)), 0) end
    self._json = v
  end
  return self._json
end

---The body parsed as a form (urlencoded or multipart/form-data). Options: max_size (whole body; default
---app.max_form_size or 64 MiB for multipart, max_body_size for urlencoded), max_files, max_fields,
---max_part_size, spool_threshold (bytes of a file kept in memory before it moves to a temporary file).
---@param opts? table
---@return lasgi.FormData
function Request:form(opts)
  if self._form then return self._form end
  opts = opts or {}
  local ctype, params = formparsers.parse_options_header(self.headers:get("content-type"))
  local form
  if ctype == "multipart/form-data" then
    local parser = formparsers.multipart(params.boundary, opts)
    local max = limit(self, opts, "max_form_size", M.default_max_form_size)
    local ok, err = pcall(function()
      for chunk in self:stream({ max_size = max }) do parser:feed(chunk) end
    end)
    if not ok then
      pcall(parser.finish, parser)
      error(err, 0)
    end
    form = parser:finish()
  elseif ctype == "application/x-www-form-urlencoded" then
    form = formparsers.urlencoded(self:body(opts.max_size and { max_size = opts.max_size }), opts)
  else
    form = datastructures.form_data()
  end
  self._form = form
  return form
end

---Releases the temporary files of a parsed form.
function Request:close()
  if self._form then self._form:close() end
end

---Absolute URL of the route named `name` (see Router:url_path_for).
---@param name string
---@param params? table
---@return lasgi.URL
function Request:url_for(name, params)
  local router = self.scope.router
  if not router then error("Request:url_for: no router in the scope", 2) end
  local path = router:url_path_for(name, params)
  local root = (self.scope.app_root_path or self.scope.root_path or "")
  return self.url:replace({ path = root .. path, query = "", fragment = "" })
end

return M
