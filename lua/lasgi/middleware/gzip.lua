-- GZip: compresses responses for clients that accept gzip, when the body is at least `minimum_size` bytes
-- (or streamed) and its type is compressible. Compression uses the loop's deflate primitive
-- (uv.new_deflate{format = "gzip"}, a luvrs extension); without it responses pass through unchanged.
local datastructures = require "lasgi.datastructures"
local loop = require "lasgi.loop"

local M = {}

M.default_types = { "text/", "application/json", "application/javascript", "application/xml",
                    "application/xhtml", "+json", "+xml", "image/svg+xml", "application/wasm" }

local function accepts_gzip(value)
  if not value then return false end
  for item in value:lower():gmatch("[^,]+") do
    local coding, params = item:match("^%s*([^;%s]+)%s*(.*)$")
    if coding == "gzip" or coding == "*" then
      local q = tonumber(params:match("q%s*=%s*([%d.]+)"))
      if q == nil or q > 0 then return coding == "gzip" or not value:lower():find("gzip") end
    end
  end
  return false
end
M.accepts_gzip = accepts_gzip

---The deflate factory of the loop module (function(level) -> deflate stream), or nil when absent.
---@return function|nil
function M.loop_deflate()
  local uv = loop.get()
  if uv and uv.new_deflate then
    return function(level) return uv.new_deflate({ format = "gzip", level = level }) end
  end
  return nil
end

---Wraps `app`. opts: minimum_size (500), compresslevel (6), compressible_types (prefixes or "+suffix"
---entries; text/event-stream is never compressed), deflate (a factory function(level) -> stream with
---:write(data, flush); default: the loop's uv.new_deflate, or pass-through when there is none).
---@param app function|table
---@param opts? table
---@return function
function M.new(app, opts)
  opts = opts or {}
  local minimum = opts.minimum_size or 500
  local level = opts.compresslevel or 6
  local types = opts.compressible_types or M.default_types
  local factory = opts.deflate
  local looked_up = factory ~= nil

  local function compressible(ctype)
    if not ctype then return false end
    ctype = ctype:lower():match("^%s*([^;%s]+)") or ""
    if ctype == "text/event-stream" then return false end
    for _, t in ipairs(types) do
      if t:sub(1, 1) == "+" then
        if ctype:sub(-#t) == t then return true end
      elseif ctype:sub(1, #t) == t then
        return true
      end
    end
    return false
  end

  return function(scope, receive, send)
    if scope.type ~= "http" then return app(scope, receive, send) end
    if not looked_up then factory, looked_up = M.loop_deflate(), true end
    if not factory or not accepts_gzip(datastructures.header(scope.headers, "accept-encoding")) then
      return app(scope, receive, send)
    end
    local mode = "start" -- start | held | pass | gzip
    local start_ev, deflate
    local function begin_gzip(first_body)
      local h = datastructures.headers(start_ev.headers or {})
      h:remove("content-length")
      h:set("content-encoding", "gzip")
      h:add_vary("vary", "Accept-Encoding")
      if first_body then h:set("content-length", tostring(#first_body)) end
      mode = "gzip"
      return send(datastructures.with_headers(start_ev, h))
    end
    -- Sends the held start unchanged, then `ev`: this response goes out uncompressed.
    local function release(ev)
      mode = "pass"
      local ok, err = send(start_ev)
      if not ok then return ok, err end
      return send(ev)
    end
    return app(scope, receive, function(ev)
      local t = ev.type
      if mode == "start" then
        if t ~= "http.response.start" then return send(ev) end
        local h = datastructures.headers(ev.headers or {})
        -- A 206 describes byte ranges of the uncompressed representation: compressing it would break them.
        if h:has("content-encoding") or ev.status == 206 or h:has("content-range")
            or not compressible(h:get("content-type")) then
          mode = "pass"
          return send(ev)
        end
        start_ev, mode = ev, "held"
        return true
      elseif mode == "held" then
        if t == "http.response.body" then
          local body = ev.body or ""
          if not ev.more_body then
            if #body < minimum then return release(ev) end
            deflate = factory(level)
            local out = deflate:write(body, "finish")
            local ok, err = begin_gzip(out)
            if not ok then return ok, err end
            return send({ type = t, body = out, more_body = false })
          end
          deflate = factory(level)
          local ok, err = begin_gzip(nil)
          if not ok then return ok, err end
          return send({ type = t, body = deflate:write(body, "sync"), more_body = true })
        end
        -- pathsend and anything else: the server sends the bytes, so they go out unchanged.
        return release(ev)
      elseif mode == "gzip" and t == "http.response.body" then
        local more = ev.more_body
        return send({ type = t, body = deflate:write(ev.body or "", more and "sync" or "finish"), more_body = more })
      end
      return send(ev)
    end)
  end
end

return setmetatable(M, { __call = function(_, app, opts) return M.new(app, opts) end })
