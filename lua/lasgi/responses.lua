-- Responses: each one is a LASGI app (call it with scope, receive, send).
local datastructures = require "lasgi.datastructures"
local cookies = require "lasgi.cookies"
local json = require "lasgi.json"
local mimetypes = require "lasgi.mimetypes"
local loop = require "lasgi.loop"

local M = {}

local function class(name, parent)
  local c = { __name = name }
  c.__index = c
  if parent then
    setmetatable(c, { __index = parent })
    c.__call = parent.__call
  end
  return c
end

---@class lasgi.Response
---@field status integer
---@field headers lasgi.Headers
---@field body string
---@field media_type string|nil
---@field background function|nil called after the response is sent
local Response = class("lasgi.Response")
Response.charset = "utf-8"
M.Response = Response

---True when `v` is a response object.
---@param v any
---@return boolean
function M.is_response(v)
  local mt = type(v) == "table" and getmetatable(v)
  while mt do
    if mt == Response then return true end
    local pmt = getmetatable(mt)
    mt = pmt and pmt.__index
    if type(mt) ~= "table" then return false end
  end
  return false
end

-- Accepts (status, headers, media_type) positionally or an options table as the second argument.
local function options(fname, status, headers, media_type)
  local opts
  if type(status) == "table" then
    opts = status
  else
    opts = { status = status, headers = headers, media_type = media_type }
  end
  if opts.status ~= nil and (math.type(opts.status) ~= "integer" or opts.status < 100 or opts.status > 999) then
    error(fname .. ": argument 'status' must be an integer 100..999", 3)
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then
    error(fname .. ": argument 'headers' must be a table", 3)
  end
  return opts
end

local function init(cls, body, opts, default_type)
  local self = setmetatable({}, cls)
  self.status = opts.status or 200
  self.headers = datastructures.headers(opts.headers)
  self.media_type = opts.media_type or default_type
  self.background = opts.background
  self.body = body
  local mt = self.media_type
  if mt and not self.headers:has("content-type") then
    if mt:match("^text/") and not mt:find("charset", 1, true) then mt = mt .. "; charset=" .. self.charset end
    self.headers:set("content-type", mt)
  end
  if body and not self.headers:has("content-length") and self.status >= 200
      and self.status ~= 204 and self.status ~= 304 then
    self.headers:set("content-length", tostring(#body))
  end
  return self
end

---A response with a fixed body.
---@param content? string
---@param status? integer|table status, or options { status, headers, media_type, background }
---@param headers? table map or list of pairs
---@param media_type? string
---@return lasgi.Response
function M.response(content, status, headers, media_type)
  if content ~= nil and type(content) ~= "string" then error("Response: argument 'content' must be a string", 2) end
  return init(Response, content or "", options("Response", status, headers, media_type))
end

---Adds a Set-Cookie header (see cookies.serialize for the options).
---@param key string
---@param value? string
---@param opts? table
function Response:set_cookie(key, value, opts)
  self.headers:add("set-cookie", cookies.serialize(key, value, opts))
  return self
end

---Adds a Set-Cookie header that removes the cookie (same path/domain as when it was set).
---@param key string
---@param opts? table path, domain, secure, httponly, samesite
function Response:delete_cookie(key, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.max_age, o.expires = 0, "Thu, 01 Jan 1970 00:00:00 GMT"
  self.headers:add("set-cookie", cookies.serialize(key, "", o))
  return self
end

local function prefix(scope)
  return scope.type == "websocket" and "websocket." or ""
end

function Response:__call(scope, _, send)
  local p = prefix(scope)
  send({ type = p .. "http.response.start", status = self.status, headers = self.headers.raw })
  local body = self.body
  if scope.method == "HEAD" then body = "" end
  send({ type = p .. "http.response.body", body = body, more_body = false })
  if self.background then self.background() end
end

local PlainTextResponse = class("lasgi.PlainTextResponse", Response)
M.PlainTextResponse = PlainTextResponse
---@return lasgi.Response
function M.text(content, status, headers, media_type)
  if type(content) ~= "string" then error("PlainTextResponse: argument 'content' must be a string", 2) end
  return init(PlainTextResponse, content, options("PlainTextResponse", status, headers, media_type), "text/plain")
end

local HTMLResponse = class("lasgi.HTMLResponse", Response)
M.HTMLResponse = HTMLResponse
---@return lasgi.Response
function M.html(content, status, headers, media_type)
  if type(content) ~= "string" then error("HTMLResponse: argument 'content' must be a string", 2) end
  return init(HTMLResponse, content, options("HTMLResponse", status, headers, media_type), "text/html")
end

local JSONResponse = class("lasgi.JSONResponse", Response)
M.JSONResponse = JSONResponse
---A JSON response (lasgi.json: use json.null and json.array for null and empty arrays).
---@return lasgi.Response
function M.json(content, status, headers, media_type)
  local ok, body = pcall(json.encode, content)
  if not ok then error("JSONResponse: argument 'content': " .. tostring(body), 2) end
  local r = init(JSONResponse, body, options("JSONResponse", status, headers, media_type), "application/json")
  r.content = content
  return r
end

local RedirectResponse = class("lasgi.RedirectResponse", Response)
M.RedirectResponse = RedirectResponse
local redirect_codes = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }
---A redirect (307 by default; 301, 302, 303, 308 accepted).
---@param url string|lasgi.URL
---@param status? integer|table
---@param headers? table
---@return lasgi.Response
function M.redirect(url, status, headers)
  local opts = options("RedirectResponse", status, headers)
  opts.status = opts.status or 307
  if not redirect_codes[opts.status] then
    error("RedirectResponse: argument 'status' must be 301, 302, 303, 307 or 308", 2)
  end
  local r = init(RedirectResponse, "", opts)
  r.headers:set("location", datastructures.quote(tostring(url), "/:?#[]@!$&'()*+,;=%"))
  return r
end

-- Streaming ---------------------------------------------------------------------------------------

local StreamingResponse = class("lasgi.StreamingResponse", Response)
M.StreamingResponse = StreamingResponse

---A response whose body comes in pieces: `content` is an iterator function returning strings until nil
---(called in the app's coroutine, so it may use luvrs.co I/O), or an array of strings.
---@param content function|table
---@param status? integer|table
---@param headers? table
---@param media_type? string
---@return lasgi.Response
function M.streaming(content, status, headers, media_type)
  if type(content) == "table" then
    local i, arr = 0, content
    content = function() i = i + 1; return arr[i] end
  elseif type(content) ~= "function" then
    error("StreamingResponse: argument 'content' must be a function or an array", 2)
  end
  local r = init(StreamingResponse, nil, options("StreamingResponse", status, headers, media_type))
  r.iterator = content
  return r
end

function StreamingResponse:__call(scope, _, send)
  local ok = send({ type = "http.response.start", status = self.status, headers = self.headers.raw })
  if ok and scope.method ~= "HEAD" then
    for chunk in self.iterator do
      if type(chunk) ~= "string" then error("StreamingResponse: iterator returned a " .. type(chunk), 0) end
      if chunk ~= "" and not send({ type = "http.response.body", body = chunk, more_body = true }) then
        ok = false
        break
      end
    end
  end
  if ok then send({ type = "http.response.body", body = "", more_body = false }) end
  if self.background then self.background() end
end

-- Files -------------------------------------------------------------------------------------------

local FileResponse = class("lasgi.FileResponse", Response)
M.FileResponse = FileResponse
FileResponse.chunk_size = 64 * 1024

---Size, modification time and kind ("file", "directory") of a path; nil if absent. Uses the loop's
---fs_stat when it has one; else io.open + seek for the size, and no mtime (so no ETag/Last-Modified).
---@param path string
---@return table|nil
function M.stat(path)
  local uv = loop.get()
  if uv and uv.fs_stat then
    local st = uv.fs_stat(path)
    if not st then return nil end
    return { size = st.size, mtime = st.mtime and st.mtime.sec, type = st.type }
  end
  local f = io.open(path, "rb")
  if not f then return nil end
  -- Reading from a directory fails with EISDIR (21): that is how a directory is told apart here.
  local probe, _, code = f:read(0)
  if probe == nil and code == 21 then
    f:close()
    return { size = 0, type = "directory" }
  end
  local size = f:seek("end")
  f:close()
  return { size = size or 0, type = "file" }
end

---A response that sends a file: Content-Type from the name, Content-Length, ETag and Last-Modified
---(when the loop offers fs_stat), Range requests (206/416), HEAD, conditional GET (304), and
---`http.response.pathsend` when the server offers it.
---opts: status, headers, media_type, filename (Content-Disposition), content_disposition_type
---("attachment"), stat (a precomputed M.stat result), conditional (default true).
---@param path string
---@param opts? table
---@return lasgi.Response
function M.file(path, opts)
  if type(path) ~= "string" then error("FileResponse: argument 'path' must be a string", 2) end
  opts = options("FileResponse", opts)
  local r = init(FileResponse, nil, opts, opts.media_type or mimetypes.guess(opts.filename or path))
  r.path = path
  r.filename = opts.filename
  r.stat_result = opts.stat
  r.conditional = opts.conditional ~= false
  if opts.filename then
    local dtype = opts.content_disposition_type or "attachment"
    local name = opts.filename
    local v
    if name:find("[^\32-\126]") or name:find('["\\]') then
      v = ("%s; filename*=utf-8''%s"):format(dtype, datastructures.quote(name, ""))
    else
      v = ('%s; filename="%s"'):format(dtype, name)
    end
    r.headers:setdefault("content-disposition", v)
  end
  return r
end

-- Parses "bytes=a-b, c-, -n" against `size`: returns a sorted, merged list of {start, stop} (inclusive),
-- an empty list when nothing is satisfiable, or nil when the header is malformed (then it is ignored).
local function parse_range(header, size)
  local spec = header:match("^%s*bytes%s*=%s*(.-)%s*$")
  if not spec or spec == "" then return nil end
  local ranges = {}
  for part in (spec .. ","):gmatch("(.-),") do
    part = part:gsub("^%s+", ""):gsub("%s+$", "")
    if part ~= "" then
      local a, b = part:match("^(%d*)%-(%d*)$")
      if not a or (a == "" and b == "") then return nil end
      local start, stop
      if a == "" then
        local n = tonumber(b)
        if n > 0 and size > 0 then start, stop = math.max(size - n, 0), size - 1 end
      else
        start = tonumber(a)
        stop = b ~= "" and tonumber(b) or size - 1
        if b ~= "" and stop < start then return nil end
        if start >= size then start = nil else stop = math.min(stop, size - 1) end
      end
      if start then ranges[#ranges + 1] = { start, stop } end
    end
  end
  table.sort(ranges, function(x, y) return x[1] < y[1] end)
  local merged = {}
  for _, r in ipairs(ranges) do
    local last = merged[#merged]
    if last and r[1] <= last[2] + 1 then
      last[2] = math.max(last[2], r[2])
    else
      merged[#merged + 1] = { r[1], r[2] }
    end
  end
  return merged
end
M._parse_range = parse_range

local function send_file_range(path, start, stop, send, chunk_size, more_after)
  local f, err = io.open(path, "rb")
  if not f then error("FileResponse: cannot open " .. path .. ": " .. tostring(err), 0) end
  f:seek("set", start)
  local left = stop - start + 1
  local ok = true
  while left > 0 do
    local chunk = f:read(math.min(chunk_size, left))
    if not chunk or chunk == "" then break end
    left = left - #chunk
    local more = left > 0 or more_after
    if not send({ type = "http.response.body", body = chunk, more_body = more }) then ok = false; break end
  end
  f:close()
  if ok and left > 0 then error("FileResponse: " .. path .. " shrank while being sent", 0) end
  return ok
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local uv = loop.get()
  local cwd = uv and uv.cwd and uv.cwd() or os.getenv("PWD") or "."
  return cwd .. "/" .. path
end

local function etag_matches(list, etag)
  if not list or not etag then return false end
  for tag in list:gmatch("[^,]+") do
    tag = tag:gsub("^%s+", ""):gsub("%s+$", ""):gsub("^W/", "")
    if tag == "*" or tag == etag then return true end
  end
  return false
end

function FileResponse:__call(scope, _, send)
  local st = self.stat_result or M.stat(self.path)
  if not st or st.type ~= "file" then
    error("FileResponse: not a regular file: " .. self.path, 0)
  end
  -- Work on a copy: the same FileResponse may be sent more than once (with or without a Range).
  local headers = datastructures.headers(self.headers)
  local size = st.size
  local etag
  if st.mtime then
    etag = ('"%x-%x"'):format(st.mtime, size)
    headers:setdefault("last-modified", cookies.http_date(st.mtime))
    headers:setdefault("etag", etag)
  end
  headers:setdefault("accept-ranges", "bytes")
  local req = datastructures.scope_headers(scope.headers)
  local method = scope.method or "GET"
  local get_like = method == "GET" or method == "HEAD"
  if self.conditional and get_like and self.status == 200 then
    local inm = req:get("if-none-match")
    local not_modified
    if inm then
      not_modified = etag_matches(inm, etag)
    else
      local ims = cookies.parse_http_date(req:get("if-modified-since"))
      not_modified = ims and st.mtime and st.mtime <= ims
    end
    if not_modified then
      local h = datastructures.headers()
      for _, name in ipairs({ "etag", "last-modified", "cache-control", "vary", "content-location" }) do
        local v = headers:get(name)
        if v then h:set(name, v) end
      end
      send({ type = "http.response.start", status = 304, headers = h.raw })
      send({ type = "http.response.body", body = "", more_body = false })
      return
    end
  end
  local ranges
  local range_header = req:get("range")
  if range_header and get_like and self.status == 200 then
    local if_range = req:get("if-range")
    if not if_range or if_range == etag or (st.mtime and if_range == headers:get("last-modified")) then
      ranges = parse_range(range_header, size)
    end
  end
  if ranges and #ranges == 0 then
    local h = datastructures.headers({ { "content-range", "bytes */" .. size },
      { "content-type", "text/plain; charset=utf-8" }, { "content-length", "21" } })
    send({ type = "http.response.start", status = 416, headers = h.raw })
    send({ type = "http.response.body", body = "Range Not Satisfiable", more_body = false })
    return
  end
  local head = method == "HEAD"
  if not ranges then
    headers:set("content-length", tostring(size))
    send({ type = "http.response.start", status = self.status, headers = headers.raw })
    if head or size == 0 then
      send({ type = "http.response.body", body = "", more_body = false })
    elseif scope.extensions and scope.extensions["http.response.pathsend"] then
      send({ type = "http.response.pathsend", path = absolute(self.path) })
    else
      send_file_range(self.path, 0, size - 1, send, self.chunk_size, false)
    end
  elseif #ranges == 1 then
    local a, b = ranges[1][1], ranges[1][2]
    headers:set("content-length", tostring(b - a + 1))
    headers:set("content-range", ("bytes %d-%d/%d"):format(a, b, size))
    send({ type = "http.response.start", status = 206, headers = headers.raw })
    if head then
      send({ type = "http.response.body", body = "", more_body = false })
    else
      send_file_range(self.path, a, b, send, self.chunk_size, false)
    end
  else
    local boundary = ("%08x%08x"):format(math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    local ctype = headers:get("content-type") or "application/octet-stream"
    local heads, total = {}, 0
    for i, r in ipairs(ranges) do
      heads[i] = ("--%s\r\ncontent-type: %s\r\ncontent-range: bytes %d-%d/%d\r\n\r\n"):format(
        boundary, ctype, r[1], r[2], size)
      if i > 1 then heads[i] = "\r\n" .. heads[i] end
      total = total + #heads[i] + r[2] - r[1] + 1
    end
    local tail = ("\r\n--%s--\r\n"):format(boundary)
    total = total + #tail
    headers:set("content-type", "multipart/byteranges; boundary=" .. boundary)
    headers:set("content-length", tostring(total))
    send({ type = "http.response.start", status = 206, headers = headers.raw })
    if head then
      send({ type = "http.response.body", body = "", more_body = false })
    else
      for i, r in ipairs(ranges) do
        if not send({ type = "http.response.body", body = heads[i], more_body = true }) then return end
        if not send_file_range(self.path, r[1], r[2], send, self.chunk_size, true) then return end
      end
      send({ type = "http.response.body", body = tail, more_body = false })
    end
  end
  if self.background then self.background() end
end

return M
