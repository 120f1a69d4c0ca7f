-- Headers, query parameters, URLs, form data and uploaded files.
local M = {}

-- Percent-encoding -------------------------------------------------------------------------------

---Decodes %XX escapes; with `plus` true, '+' also decodes to a space (form/query encoding).
---@param s string
---@param plus? boolean
---@return string
function M.unquote(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

---Percent-encodes every byte outside `safe` (default: unreserved characters and "/").
---@param s string
---@param safe? string extra characters left as they are, default "/"
---@return string
function M.quote(s, safe)
  safe = safe or "/"
  return (s:gsub("[^%w%-%._~]", function(c)
    if safe:find(c, 1, true) then return c end
    return ("%%%02X"):format(c:byte())
  end))
end

---Encodes a query component the way HTML forms do (space as '+').
---@param s string
---@return string
function M.quote_plus(s)
  return (M.quote(tostring(s), " "):gsub(" ", "+"))
end

-- Multi-valued lists of pairs ---------------------------------------------------------------------

local function pairs_from(arg, fname)
  local list = {}
  if arg == nil then return list end
  if type(arg) ~= "table" then error(fname .. ": argument must be a table", 3) end
  if arg[1] ~= nil or next(arg) == nil then
    for i, p in ipairs(arg) do
      if type(p) ~= "table" or p[1] == nil or p[2] == nil then
        error(("%s: item %d must be a { name, value } pair"):format(fname, i), 3)
      end
      list[#list + 1] = { tostring(p[1]), tostring(p[2]) }
    end
  else
    local keys = {}
    for k in pairs(arg) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local v = arg[k]
      if type(v) == "table" then
        for _, x in ipairs(v) do list[#list + 1] = { tostring(k), tostring(x) } end
      else
        list[#list + 1] = { tostring(k), tostring(v) }
      end
    end
  end
  return list
end

-- Methods shared by Headers (pairs in self.raw) and QueryParams/FormData (pairs in self.list).
local function list_items(field)
  return function(self)
    local list, i = self[field], 0
    return function()
      i = i + 1
      local p = list[i]
      if p then return p[1], p[2] end
    end
  end
end

local function list_keys(field)
  return function(self)
    local seen, out = {}, {}
    for _, p in ipairs(self[field]) do
      if not seen[p[1]] then seen[p[1]] = true; out[#out + 1] = p[1] end
    end
    return out
  end
end

-- Headers -----------------------------------------------------------------------------------------

---@class lasgi.Headers
---@field raw table array of { name, value } pairs, names lower-case
local Headers = { __name = "lasgi.Headers" }
Headers.__index = Headers
M.Headers = Headers

---Wraps a LASGI header list (or builds one from a map `{ name = value }` or a list of pairs).
---Lookups are case-insensitive; duplicates are kept. A scope's list is used as is, not copied.
---@param raw? table
---@return lasgi.Headers
function M.headers(raw)
  local list
  if raw == nil then
    list = {}
  elseif type(raw) == "table" and getmetatable(raw) == Headers then
    list = {}
    for i, p in ipairs(raw.raw) do list[i] = { p[1], p[2] } end
  else
    list = pairs_from(raw, "Headers")
    for _, p in ipairs(list) do p[1] = p[1]:lower() end
  end
  return setmetatable({ raw = list }, Headers)
end

---Wraps a scope's header list without copying (names are already lower-case there).
---@param list table
---@return lasgi.Headers
function M.scope_headers(list)
  return setmetatable({ raw = list or {} }, Headers)
end

---First value of header `name` (lower-case) in a LASGI header list, or nil. Middleware looks up one
---or two request headers with it instead of wrapping scope.headers in a Headers object per request.
---@param list table|nil array of { name, value } pairs, names lower-case
---@param name string
---@return string|nil
function M.header(list, name)
  if not list then return nil end
  for i = 1, #list do
    local p = list[i]
    if p[1] == name then return p[2] end
  end
  return nil
end

---First value of header `name`, or `default`.
---@param name string
---@param default? string
---@return string|nil
function Headers:get(name, default)
  local v = M.header(self.raw, name:lower())
  if v == nil then return default end
  return v
end

---Every value of header `name`, in order.
---@param name string
---@return string[]
function Headers:get_all(name)
  name = name:lower()
  local out = {}
  for _, p in ipairs(self.raw) do
    if p[1] == name then out[#out + 1] = p[2] end
  end
  return out
end
Headers.getlist = Headers.get_all

---A copy of the LASGI event `ev` carrying `headers` instead of its own. Middleware that changes a
---response's headers sends a copy: the app's event (and header list) may belong to a response object
---that is sent again.
---@param ev table
---@param headers lasgi.Headers
---@return table
function M.with_headers(ev, headers)
  local copy = {}
  for k, v in pairs(ev) do copy[k] = v end
  copy.headers = headers.raw
  return copy
end

---@param name string
---@return boolean
function Headers:has(name)
  return self:get(name) ~= nil
end

---Iterator over (name, value), duplicates included.
Headers.items = list_items("raw")

---Distinct names in order of first appearance.
---@return string[]
Headers.keys = list_keys("raw")

---Replaces every value of `name` with one value.
---@param name string
---@param value string
function Headers:set(name, value)
  if type(name) ~= "string" then error("Headers:set: argument 'name' must be a string", 2) end
  name = name:lower()
  value = tostring(value)
  local raw, found = self.raw, false
  local i = 1
  while i <= #raw do
    if raw[i][1] == name then
      if found then
        table.remove(raw, i)
        i = i - 1
      else
        raw[i] = { name, value }
        found = true
      end
    end
    i = i + 1
  end
  if not found then raw[#raw + 1] = { name, value } end
end

---Adds one more value for `name`.
---@param name string
---@param value string
function Headers:add(name, value)
  if type(name) ~= "string" then error("Headers:add: argument 'name' must be a string", 2) end
  self.raw[#self.raw + 1] = { name:lower(), tostring(value) }
end

---Sets `name` if it is absent; returns the value in effect.
---@param name string
---@param value string
---@return string
function Headers:setdefault(name, value)
  local v = self:get(name)
  if v then return v end
  self:add(name, value)
  return tostring(value)
end

---Removes every value of `name`.
---@param name string
function Headers:remove(name)
  name = name:lower()
  local raw = self.raw
  for i = #raw, 1, -1 do
    if raw[i][1] == name then table.remove(raw, i) end
  end
end

---Appends `value` to a comma-separated header such as Vary, unless it is already listed.
---@param name string
---@param value string
function Headers:add_vary(name, value)
  local cur = self:get(name)
  if not cur then return self:set(name, value) end
  for item in cur:gmatch("[^,%s]+") do
    if item:lower() == value:lower() then return end
  end
  self:set(name, cur .. ", " .. value)
end

function Headers:__len() return #self.raw end

-- Query parameters --------------------------------------------------------------------------------

---@class lasgi.QueryParams
---@field list table array of { name, value } pairs
local QueryParams = { __name = "lasgi.QueryParams" }
QueryParams.__index = QueryParams
M.QueryParams = QueryParams

---Parses an urlencoded string ("a=1&b=2&a=3"), or builds from a map or list of pairs.
---@param src? string|table
---@param keep_blank? boolean keep "a=" as "" (default true)
---@return lasgi.QueryParams
function M.query_params(src, keep_blank)
  local list = {}
  if type(src) == "string" then
    for part in src:gmatch("[^&;]+") do
      local k, v = part:match("^([^=]*)=(.*)$")
      if not k then k, v = part, "" end
      if v ~= "" or keep_blank ~= false then
        list[#list + 1] = { M.unquote(k, true), M.unquote(v, true) }
      end
    end
  elseif src ~= nil then
    list = pairs_from(src, "QueryParams")
  end
  return setmetatable({ list = list }, QueryParams)
end

---First value of `name`, or `default`.
function QueryParams:get(name, default)
  for _, p in ipairs(self.list) do
    if p[1] == name then return p[2] end
  end
  return default
end

---Every value of `name`.
---@return string[]
function QueryParams:get_all(name)
  local out = {}
  for _, p in ipairs(self.list) do
    if p[1] == name then out[#out + 1] = p[2] end
  end
  return out
end
QueryParams.getlist = QueryParams.get_all

function QueryParams:has(name) return self:get(name) ~= nil end

---Iterator over (name, value), duplicates included.
QueryParams.items = list_items("list")

---Distinct names in order of first appearance.
QueryParams.keys = list_keys("list")

function QueryParams:__len() return #self.list end

---Urlencoded form ("a=1&b=x+y").
function QueryParams:__tostring()
  local parts = {}
  for i, p in ipairs(self.list) do parts[i] = M.quote_plus(p[1]) .. "=" .. M.quote_plus(p[2]) end
  return table.concat(parts, "&")
end

---Encodes a map or list of pairs as a query string.
---@param params table
---@return string
function M.urlencode(params)
  return tostring(M.query_params(params))
end

-- URL ---------------------------------------------------------------------------------------------

---@class lasgi.URL
---@field scheme string
---@field hostname string|nil
---@field port integer|nil
---@field path string
---@field query string
---@field fragment string
local URL = { __name = "lasgi.URL" }
URL.__index = URL
M.URL = URL

local default_ports = { http = 80, https = 443, ws = 80, wss = 443 }

---Parses an absolute or relative URL ("http://h:8000/p?q#f", "/p?q").
---@param s string
---@return lasgi.URL
function M.url(s)
  if type(s) ~= "string" then error("URL: argument 's' must be a string", 2) end
  local u = setmetatable({ scheme = "", path = "", query = "", fragment = "" }, URL)
  local rest = s
  local frag = rest:match("#(.*)$")
  if frag then u.fragment = frag; rest = rest:gsub("#.*$", "") end
  local q = rest:match("%?(.*)$")
  if q then u.query = q; rest = rest:gsub("%?.*$", "") end
  local scheme, after = rest:match("^(%a[%w+.-]*)://(.*)$")
  if scheme then
    u.scheme = scheme:lower()
    local authority, path = after:match("^([^/]*)(.*)$")
    u.path = path
    local host, port = authority:match("^%[(.-)%]:?(%d*)$")
    if host then u.ipv6 = true else host, port = authority:match("^([^:]*):?(%d*)$") end
    u.hostname = host ~= "" and host:lower() or nil
    u.port = tonumber(port)
  else
    u.path = rest
  end
  return u
end

---"host[:port]" as it appears in a Host header (port left out when it is the scheme's default).
---@return string
function URL:netloc()
  if not self.hostname then return "" end
  local host = self.ipv6 and ("[" .. self.hostname .. "]") or self.hostname
  if self.port and self.port ~= default_ports[self.scheme] then host = host .. ":" .. self.port end
  return host
end

---A copy with some parts replaced: `url:replace{ scheme = "https", port = false }` (false removes).
---@param parts table
---@return lasgi.URL
function URL:replace(parts)
  local u = setmetatable({}, URL)
  for k, v in pairs(self) do u[k] = v end
  for k, v in pairs(parts) do
    if v == false then u[k] = nil else u[k] = v end
  end
  return u
end

---A copy whose query holds `params` in addition to (or replacing, for the same name) the existing ones.
---@param params table map name -> value
---@return lasgi.URL
function URL:include_query_params(params)
  local qp = M.query_params(self.query)
  local list = {}
  for _, p in ipairs(qp.list) do
    if params[p[1]] == nil then list[#list + 1] = p end
  end
  for _, p in ipairs(pairs_from(params, "URL:include_query_params")) do list[#list + 1] = p end
  return self:replace({ query = tostring(setmetatable({ list = list }, QueryParams)) })
end

function URL:__tostring()
  local out = {}
  if self.scheme ~= "" and self.hostname then
    out[#out + 1] = self.scheme .. "://" .. self:netloc()
  end
  out[#out + 1] = self.path
  if self.query ~= "" then out[#out + 1] = "?" .. self.query end
  if self.fragment ~= "" then out[#out + 1] = "#" .. self.fragment end
  return table.concat(out)
end

function URL.__eq(a, b) return tostring(a) == tostring(b) end

---The URL of a request, from its scope (Host header first, then scope.server).
---@param scope table
---@return lasgi.URL
function M.url_from_scope(scope)
  local scheme = scope.scheme or "http"
  local host = M.header(scope.headers, "host")
  local path = scope.raw_path or M.quote(scope.path or "/", "/!$&'()*+,;=:@")
  local qs = scope.query_string or ""
  local s
  if host then
    s = scheme .. "://" .. host .. path
  elseif scope.server and scope.server[2] then
    local h, port = scope.server[1], scope.server[2]
    if h:find(":", 1, true) then h = "[" .. h .. "]" end
    if port == default_ports[scheme] then s = scheme .. "://" .. h .. path
    else s = scheme .. "://" .. h .. ":" .. port .. path end
  else
    s = path
  end
  if qs ~= "" then s = s .. "?" .. qs end
  return M.url(s)
end

-- Form data and uploaded files ---------------------------------------------------------------------

---@class lasgi.UploadFile
---@field filename string
---@field content_type string
---@field headers lasgi.Headers
---@field size integer
---@field file file* open for reading when spooled to disk, nil while in memory
local UploadFile = { __name = "lasgi.UploadFile" }
UploadFile.__index = UploadFile
M.UploadFile = UploadFile

---@param filename string
---@param content_type string
---@param headers lasgi.Headers
---@param threshold integer bytes kept in memory before the content moves to a temporary file
---@return lasgi.UploadFile
function M.upload_file(filename, content_type, headers, threshold)
  return setmetatable({ filename = filename, content_type = content_type, headers = headers, size = 0,
                        threshold = threshold or 1024 * 1024, parts = {}, pos = 0 }, UploadFile)
end

---Appends data, moving the content to a temporary file (io.tmpfile) once past the threshold.
---@param data string
function UploadFile:write(data)
  self.size = self.size + #data
  if self.file then
    assert(self.file:write(data))
  elseif self.size > self.threshold then
    local f = assert(io.tmpfile())
    for _, p in ipairs(self.parts) do assert(f:write(p)) end
    assert(f:write(data))
    self.parts = nil
    self.file = f
  else
    self.parts[#self.parts + 1] = data
  end
end

---True when the content lives in a temporary file rather than in memory.
---@return boolean
function UploadFile:in_file()
  return self.file ~= nil
end

---Reads `n` bytes (default: the rest) from the current position; "" at the end.
---@param n? integer
---@return string
function UploadFile:read(n)
  if self.file then
    self.file:seek("set", self.pos)
    local s = self.file:read(n or "a") or ""
    self.pos = self.pos + #s
    return s
  end
  if #self.parts > 1 then self.parts = { table.concat(self.parts) } end
  local all = self.parts[1] or ""
  local s = all:sub(self.pos + 1, n and (self.pos + n) or #all)
  self.pos = self.pos + #s
  return s
end

---Moves the read position.
---@param pos integer
function UploadFile:seek(pos)
  self.pos = pos
end

---Copies the content to `path`.
---@param path string
---@return boolean|nil ok, string|nil err
function UploadFile:save(path)
  local out, err = io.open(path, "wb")
  if not out then return nil, err end
  local saved = self.pos
  self.pos = 0
  while true do
    local chunk = self:read(65536)
    if chunk == "" then break end
    out:write(chunk)
  end
  self.pos = saved
  out:close()
  return true
end

---Releases the temporary file.
function UploadFile:close()
  if self.file then self.file:close(); self.file = nil; self.parts = {} end
end

---@class lasgi.FormData : lasgi.QueryParams
local FormData = setmetatable({ __name = "lasgi.FormData" }, { __index = QueryParams })
FormData.__index = FormData
FormData.__len = QueryParams.__len
M.FormData = FormData

---A multi-valued form: values are strings or UploadFile objects.
---@param list? table array of { name, value }
---@return lasgi.FormData
function M.form_data(list)
  return setmetatable({ list = list or {} }, FormData)
end

---Closes every uploaded file of the form.
function FormData:close()
  for _, p in ipairs(self.list) do
    if getmetatable(p[2]) == UploadFile then p[2]:close() end
  end
end

return M
