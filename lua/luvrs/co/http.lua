-- luvrs.co.http: an HTTP/1.1 client on luvrs.co sockets, with keep-alive through luvrs.co.pool.
--
-- URLs: "http://host[:port]/path?query" and, for Unix domain sockets, "http+unix://<percent-encoded
-- socket path>/path?query" (e.g. "http+unix://%2Ftmp%2Fapp.sock/items"); opts.unix_socket does the same
-- for an ordinary http:// URL (like curl --unix-socket).
local co = require("luvrs.co")
local poolmod = require("luvrs.co.pool")

local http = {}

http.USER_AGENT = "luvrs.co.http/0.1"
http.MAX_HEAD = 65536   -- bytes of one response head
http.MAX_HEADERS = 200  -- header lines in one response head
http.CHUNK = 65536      -- largest piece a streaming body reader returns

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }
local REDIRECT = { [301] = true, [302] = true, [303] = true, [307] = true, [308] = true }

local argerr = co._argerr

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

---Splits a URL. Returns a table {scheme, host, port, unix, target, authority}, or nil, reason.
---@param url string
---@return table|nil, string?
function http.parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "http+unix" then return nil, "unsupported scheme '" .. scheme .. "'" end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  target = target:gsub("#.*$", "")
  if target == "" or target:sub(1, 1) == "?" then target = "/" .. target end
  if target:find("[%s%c]") then return nil, "space or control character in the path" end
  if authority:find("@", 1, true) then return nil, "user information in URLs is not supported" end
  local u = { scheme = scheme, target = target }
  if scheme == "http+unix" then
    if authority == "" then return nil, "missing socket path" end
    u.unix = percent_decode(authority)
    u.authority = "localhost"
    return u
  end
  local host, port = authority:match("^(%[[%x:.%%%w]+%])(.*)$")
  if not host then host, port = authority:match("^([^:]*)(.*)$") end
  if host == "" then return nil, "missing host" end
  if port ~= "" then
    local p = port:match("^:(%d+)$")
    if not p or tonumber(p) < 1 or tonumber(p) > 65535 then return nil, "bad port" end
    u.port = tonumber(p)
  else
    u.port = 80
  end
  u.host = host:lower()
  u.authority = u.port == 80 and u.host or (u.host .. ":" .. u.port)
  return u
end

-- Resolves a Location header against the URL it came from.
local function resolve(base, loc)
  if loc:match("^%a[%w+.-]*://") then return loc end
  local prefix = base.scheme .. "://" .. (base.unix and base.raw_authority or base.authority)
  if loc:sub(1, 2) == "//" then return base.scheme .. ":" .. loc end
  if loc:sub(1, 1) == "/" then return prefix .. loc end
  local dir = base.target:gsub("%?.*$", ""):match("^(.*/)") or "/"
  if loc:sub(1, 1) == "?" then return prefix .. base.target:gsub("%?.*$", "") .. loc end
  return prefix .. dir .. loc
end

local TOKEN = "^[!#$%%&'*+.^_`|~%w-]+$"

-- Request headers as an array of {name, value} plus a set of lower-case names present.
local function norm_headers(fname, h)
  local list, seen = {}, {}
  if h == nil then return list, seen end
  if type(h) ~= "table" then argerr(fname, "opts.headers", "a table", h) end
  local function add(name, value)
    if type(name) ~= "string" or not name:match(TOKEN) then
      error(("%s: argument 'opts.headers' has an invalid header name %q"):format(fname, tostring(name)), 4)
    end
    if type(value) == "number" then value = tostring(value) end
    if type(value) ~= "string" or value:find("[\r\n%z]") then
      error(("%s: argument 'opts.headers' has an invalid value for %q"):format(fname, name), 4)
    end
    list[#list + 1] = { name, value }
    seen[name:lower()] = value
  end
  for i = 1, #h do
    local pair = h[i]
    if type(pair) ~= "table" then
      error(("%s: argument 'opts.headers' item %d must be a {name, value} pair"):format(fname, i), 3)
    end
    add(pair[1], pair[2])
  end
  for k, v in pairs(h) do
    if math.type(k) ~= "integer" then
      if type(v) == "table" then
        for _, x in ipairs(v) do add(k, x) end
      else
        add(k, v)
      end
    end
  end
  return list, seen
end

-- The request headers without those named in `drop` (a set of lower-case names), as norm_headers gives them.
local function without(hlist, drop)
  local list, seen = {}, {}
  for _, h in ipairs(hlist) do
    local l = h[1]:lower()
    if not drop[l] then
      list[#list + 1] = h
      seen[l] = h[2]
    end
  end
  return list, seen
end

-- Dropped when a redirect turns the request into a GET without a body, and when it leaves the origin.
local BODY_HEADERS = { ["content-length"] = true, ["content-type"] = true, ["transfer-encoding"] = true }
local CREDENTIAL_HEADERS = { authorization = true, cookie = true, host = true }

local function header_has(value, token)
  if not value then return false end
  for part in value:lower():gmatch("[^,%s]+") do
    if part == token then return true end
  end
  return false
end

-- Reads one line of a response (head line, chunk size, trailer) of at most `limit` bytes (a constant
-- options table: this runs for every header line); a longer one is a protocol error.
local LINE_1, LINE_4K, LINE_8K = { max = 1 }, { max = 4096 }, { max = 8192 }
local function read_line(sock, limit)
  local line, err, partial = sock:read_until("\n", limit)
  if not line and err == "EMSGSIZE" then err = "EPROTO" end
  return line, err, partial
end

---------------------------------------------------------------------------------------------------
-- Response bodies

---@class luvrs.co.http.Body
local Body = {}
Body.__index = Body
Body.__name = "luvrs.co.http.body"

local function body_fail(self, err)
  self.err = err
  self.done = true
  if not self.sock.closed then self.sock:close() end
  return nil, err
end

local function body_end(self)
  self.done = true
  local sock = self.sock
  if self.keepalive and self.pool and sock:reusable() then
    self.pool:put(self.key, sock)
  elseif not sock.closed then
    sock:close()
  end
  return nil
end

---The next piece of the body (at most `max` bytes, default http.CHUNK); nil at the end of the body;
---nil, err on failure ("timeout", "closed" for a truncated body, "EPROTO" for bad chunked framing).
---When the body has been read to its end the connection goes back to the pool.
---@param max? integer
---@return string|nil, string?
function Body:read(max)
  if getmetatable(self) ~= Body then argerr("luvrs.co.http body:read", "self", "a body reader", self) end
  if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
    argerr("luvrs.co.http body:read", "max", "a positive integer", max)
  end
  max = max or http.CHUNK
  if self.err then return nil, self.err end
  if self.done then return nil end
  local sock, mode = self.sock, self.mode
  if mode == "length" then
    if self.remaining == 0 then return body_end(self) end
    local data, err = sock:read(math.min(self.remaining, max))
    if not data then return body_fail(self, err) end
    self.remaining = self.remaining - #data
    if self.remaining == 0 then body_end(self) end
    return data
  elseif mode == "close" then
    local data, err = sock:read(max)
    if data then return data end
    if err == "closed" then return body_end(self) end -- EOF ends this body (never kept alive)
    return body_fail(self, err)
  elseif mode == "chunked" then
    if self.chunk_left == 0 then
      local line, err = read_line(sock, LINE_4K)
      if not line then return body_fail(self, err) end
      local hex = line:match("^%s*(%x+)%s*[;\r]") or line:match("^%s*(%x+)%s*$")
      if not hex or #hex > 12 then return body_fail(self, "EPROTO") end
      local size = tonumber(hex, 16)
      if size == 0 then
        -- Trailers are read and dropped, up to the empty line.
        local total = 0
        repeat
          local t
          t, err = read_line(sock, LINE_8K)
          if not t then return body_fail(self, err) end
          total = total + #t
          if total > http.MAX_HEAD then return body_fail(self, "EPROTO") end
        until t == "" or t == "\r"
        return body_end(self)
      end
      self.chunk_left = size
    end
    local data, err = sock:read(math.min(self.chunk_left, max))
    if not data then return body_fail(self, err) end
    self.chunk_left = self.chunk_left - #data
    if self.chunk_left == 0 then
      local crlf
      crlf, err = read_line(sock, LINE_1)
      if not crlf then return body_fail(self, err) end
      if crlf ~= "\r" and crlf ~= "" then return body_fail(self, "EPROTO") end
    end
    return data
  end
  return body_end(self) -- "none"
end

---Reads the rest of the body; returns it as one string, or nil, err. Past `max` bytes: nil, "EMSGSIZE".
---@param max? integer
---@return string|nil, string?
function Body:read_all(max)
  if getmetatable(self) ~= Body then argerr("luvrs.co.http body:read_all", "self", "a body reader", self) end
  if max ~= nil and (math.type(max) ~= "integer" or max < 0) then
    argerr("luvrs.co.http body:read_all", "max", "a non-negative integer", max)
  end
  local parts, n = {}, 0
  while true do
    local data, err = self:read()
    if not data then
      if err then return nil, err end
      return table.concat(parts)
    end
    n = n + #data
    if max and n > max then return body_fail(self, "EMSGSIZE") end
    parts[#parts + 1] = data
  end
end

---Gives up on the rest of the body: the connection is closed (it cannot be reused) unless the body
---was already read to its end.
function Body:close()
  if getmetatable(self) ~= Body then argerr("luvrs.co.http body:close", "self", "a body reader", self) end
  if not self.done then body_fail(self, "closed") end
  return true
end

Body.__close = Body.close

---------------------------------------------------------------------------------------------------
-- One exchange

local function read_head(sock)
  local total = 0
  local line, err, partial
  repeat -- skip 1xx interim responses other than 101
    line, err, partial = read_line(sock, LINE_8K)
    if not line then return nil, err, partial == nil or partial == "" end
    line = line:gsub("\r$", "")
    local version, status = line:match("^HTTP/(%d%.%d) (%d%d%d)")
    if not version then return nil, "EPROTO", false end
    status = tonumber(status)
    local headers = {}
    while true do
      local h
      h, err = read_line(sock, LINE_8K)
      if not h then return nil, err, false end
      total = total + #h
      h = h:gsub("\r$", "")
      if h == "" then break end
      if total > http.MAX_HEAD or #headers >= http.MAX_HEADERS then return nil, "EPROTO", false end
      local name, value = h:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
      if not name then return nil, "EPROTO", false end
      headers[#headers + 1] = { name, value }
      local lname = name:lower()
      local prev = headers[lname]
      headers[lname] = prev and (prev .. ", " .. value) or value
    end
    if status >= 200 or status == 101 then return status, headers, version end
  until false
end

local function encode_chunk(data)
  return { string.format("%x\r\n", #data), data, "\r\n" }
end

local function send_request(sock, head, body, chunked)
  local t = type(body)
  if t == "string" then return sock:write({ head, body }) end
  if t == "table" then
    local parts = { head }
    for i = 1, #body do parts[i + 1] = body[i] end
    return sock:write(parts)
  end
  local ok, err = sock:write(head)
  if not ok or t ~= "function" then return ok, err end
  while true do
    local chunk, berr = body()
    if chunk == nil then
      if berr then return nil, "body: " .. tostring(berr) end
      break
    end
    if type(chunk) ~= "string" then return nil, "body: the body function returned a " .. type(chunk) end
    if chunk ~= "" then
      ok, err = sock:write(chunked and encode_chunk(chunk) or chunk)
      if not ok then return nil, err end
    end
  end
  if chunked then return sock:write("0\r\n\r\n") end
  return true
end

local function build_head(method, u, hlist, hseen, body, pool)
  local lines = { method, " ", u.target, " HTTP/1.1\r\n" }
  local function add(n, v)
    lines[#lines + 1] = n
    lines[#lines + 1] = ": "
    lines[#lines + 1] = v
    lines[#lines + 1] = "\r\n"
  end
  if not hseen.host then add("Host", u.authority) end
  if not hseen["user-agent"] then add("User-Agent", http.USER_AGENT) end
  local chunked = false
  local t = type(body)
  if not hseen["content-length"] and not hseen["transfer-encoding"] then
    if t == "string" then
      add("Content-Length", tostring(#body))
    elseif t == "table" then
      local n = 0
      for i = 1, #body do n = n + #body[i] end
      add("Content-Length", tostring(n))
    elseif t == "function" then
      add("Transfer-Encoding", "chunked")
      chunked = true
    elseif method == "POST" or method == "PUT" or method == "PATCH" then
      add("Content-Length", "0")
    end
  elseif header_has(hseen["transfer-encoding"], "chunked") then
    chunked = true
  end
  if not pool and not hseen.connection then add("Connection", "close") end
  for _, h in ipairs(hlist) do add(h[1], h[2]) end
  lines[#lines + 1] = "\r\n"
  return table.concat(lines), chunked
end

local function exchange(u, method, hlist, hseen, body, o)
  local pool = o.pool
  local key = u.unix and poolmod.unix_key(u.unix) or poolmod.tcp_key(u.host, u.port)
  local head, chunked = build_head(method, u, hlist, hseen, body, pool)
  local replayable = type(body) ~= "function"
  local use_pool = pool
  for _ = 1, 2 do
    local sock, reused, err
    if use_pool then sock = use_pool:get(key) end
    reused = sock ~= nil
    if not sock then
      local copts = { timeout = o.timeouts.connect }
      if u.unix then
        sock, err = co.unix_connect(u.unix, copts)
      else
        sock, err = co.tcp_connect(u.host, u.port, copts)
      end
      if not sock then return nil, err end
    end
    sock:settimeout(o.timeouts.connect, o.timeouts.send, o.timeouts.read)
    local ok, status, headers, version, nothing
    ok, err = send_request(sock, head, body, chunked)
    if ok then
      status, headers, nothing = read_head(sock)
      if status then version = nothing else err = headers end
    else
      nothing = err ~= "timeout"
    end
    if status then
      local mode, remaining = "close", nil
      local te = headers["transfer-encoding"]
      if method == "HEAD" or status == 204 or status == 304 or status == 101 then
        mode = "none"
      elseif te then
        if not header_has(te, "chunked") then
          mode = "close"
        else
          mode = "chunked"
        end
      elseif headers["content-length"] then
        local cl = headers["content-length"]:match("^%s*(%d+)%s*$")
        if not cl or #cl > 15 then
          sock:close()
          return nil, "EPROTO"
        end
        mode, remaining = "length", tonumber(cl)
      end
      local conn = headers.connection
      local server_keeps = (version == "1.1" and not header_has(conn, "close"))
        or (version ~= "1.1" and header_has(conn, "keep-alive"))
      local keepalive = mode ~= "close" and status ~= 101 and not header_has(hseen.connection, "close")
        and server_keeps
      local b = setmetatable({
        sock = sock, mode = mode, remaining = remaining, chunk_left = 0, done = false,
        keepalive = keepalive, pool = pool, key = key,
      }, Body)
      if status == 101 then b.done = true end -- the socket now speaks another protocol: b.sock
      return status, headers, b
    end
    sock:close()
    -- A pooled connection the server closed meanwhile: retry once on a new one when that is safe.
    local stale = reused and nothing and (err == "closed" or err == "ECONNRESET" or err == "EPIPE")
    if not (stale and replayable and IDEMPOTENT[method]) then return nil, err end
    use_pool = nil
  end
end

---------------------------------------------------------------------------------------------------
-- The public entry points

local function check_timeouts(fname, t)
  local d = co.DEFAULT_TIMEOUTS
  if t == nil then return { connect = d.connect, send = d.send, read = d.read } end
  if math.type(t) then
    if t < 0 then argerr(fname, "opts.timeout", "a non-negative number of ms or a table", t) end
    return { connect = t, send = t, read = t }
  end
  if type(t) ~= "table" then argerr(fname, "opts.timeout", "a number of ms or a table {connect, send, read}", t) end
  local out = {}
  for _, k in ipairs({ "connect", "send", "read" }) do
    local v = t[k]
    if v ~= nil and (math.type(v) == nil or v < 0) then
      argerr(fname, "opts.timeout." .. k, "a non-negative number of ms", v)
    end
    out[k] = v or d[k]
  end
  return out
end

---Sends one request and reads the response head. Returns `status, headers, body`, or nil, err.
---`headers` holds the response headers both as an array of {name, value} pairs in arrival order and
---by lower-case name (repeated headers joined with ", "). `body` is the whole body as a string, or
---with opts.stream a reader (body:read(), body:read_all(), body:close()).
---@param opts table url, method?, headers?, body?, timeout?, redirects?, stream?, pool?, unix_socket?, max_body?
---@return integer|nil status, table|string headers_or_err, string|luvrs.co.http.Body|nil body
function http.request(opts)
  local fname = "luvrs.co.http.request"
  if type(opts) ~= "table" then argerr(fname, "opts", "a table", opts) end
  local _, main = coroutine.running()
  if main then error(fname .. ": must be called from a coroutine (use co.run, co.spawn or a server request)", 2) end
  if type(opts.url) ~= "string" then argerr(fname, "opts.url", "a string", opts.url) end
  local u, why = http.parse_url(opts.url)
  if not u then error(("%s: argument 'opts.url' is not usable: %s"):format(fname, why), 2) end
  local method = opts.method or "GET"
  if type(method) ~= "string" or not method:match("^[%u%d_-]+$") then
    argerr(fname, "opts.method", "an upper-case method name", method)
  end
  local body = opts.body
  local bt = type(body)
  if body ~= nil and bt ~= "string" and bt ~= "function" and bt ~= "table" then
    argerr(fname, "opts.body", "a string, an array of strings or a function", body)
  end
  if bt == "table" then
    for i = 1, #body do
      if type(body[i]) ~= "string" then argerr(fname, "opts.body[" .. i .. "]", "a string", body[i]) end
    end
  end
  local hlist, hseen = norm_headers(fname, opts.headers)
  local redirects = opts.redirects or 0
  if math.type(redirects) ~= "integer" or redirects < 0 then
    argerr(fname, "opts.redirects", "a non-negative integer", redirects)
  end
  local pool = opts.pool
  if pool == nil then pool = poolmod.default end
  if pool ~= false and getmetatable(pool) ~= poolmod.Pool then
    argerr(fname, "opts.pool", "a luvrs.co.pool, false or nil", pool)
  end
  if opts.unix_socket ~= nil and type(opts.unix_socket) ~= "string" then
    argerr(fname, "opts.unix_socket", "a string", opts.unix_socket)
  end
  local max_body = opts.max_body
  if max_body ~= nil and (math.type(max_body) ~= "integer" or max_body < 0) then
    argerr(fname, "opts.max_body", "a non-negative integer", max_body)
  end
  local o = { timeouts = check_timeouts(fname, opts.timeout), pool = pool }
  if opts.unix_socket then u.unix = opts.unix_socket end

  local hops = 0
  while true do
    u.raw_authority = opts.url:match("^%a[%w+.-]*://([^/?#]*)")
    local status, headers, b = exchange(u, method, hlist, hseen, body, o)
    if not status then return nil, headers end
    local loc = headers.location
    if redirects > 0 and REDIRECT[status] and loc then
      if hops >= redirects then
        local _, derr = b:read_all(65536) -- keeps the connection reusable
        if derr then b:close() end
        return nil, "too many redirects"
      end
      local keep = status == 307 or status == 308
      if keep and type(body) == "function" then -- cannot send a streamed body twice: hand it back
        if opts.stream then return status, headers, b end
        local data, err = b:read_all(max_body)
        if not data then return nil, err end
        return status, headers, data
      end
      -- Drain a small body so the connection can be reused; a large one is not worth it.
      local _, derr = b:read_all(65536)
      if derr then b:close() end
      local nexturl = resolve(u, loc)
      local nu, nwhy = http.parse_url(nexturl)
      if not nu then return nil, "bad redirect: " .. nwhy end
      if not keep and method ~= "HEAD" then
        method, body = "GET", nil
        hlist, hseen = without(hlist, BODY_HEADERS)
      end
      if nu.unix ~= u.unix or nu.host ~= u.host or nu.port ~= u.port then
        -- Credentials are not sent to another origin.
        hlist, hseen = without(hlist, CREDENTIAL_HEADERS)
      end
      if opts.unix_socket and not nu.unix and nu.host == u.host and nu.port == u.port then nu.unix = u.unix end
      opts = setmetatable({ url = nexturl }, { __index = opts })
      u = nu
      hops = hops + 1
    else
      if opts.stream then return status, headers, b end
      local data, err = b:read_all(max_body)
      if not data then return nil, err end
      return status, headers, data
    end
  end
end

---http.request with opts.url = url (and method "GET" unless opts.method).
---@param url string
---@param opts? table
function http.get(url, opts)
  if opts ~= nil and type(opts) ~= "table" then argerr("luvrs.co.http.get", "opts", "a table or nil", opts) end
  local o = setmetatable({ url = url }, { __index = opts or {} })
  return http.request(o)
end

http.Body = Body

return http
