-- The RFC 6455 opening handshake: validating an upgrade request, Sec-WebSocket-Accept (SHA-1 + base64 in
-- pure Lua), subprotocol lists, and the 101 / rejection responses.
local handshake = {}

local spack, sunpack = string.pack, string.unpack
local byte, sub, lower, find, gmatch = string.byte, string.sub, string.lower, string.find,
  string.gmatch
local concat = table.concat

handshake.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local function rol(x, n)
  return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF
end

---SHA-1 digest (20 raw bytes). Only used on short handshake keys, so clarity wins over speed.
---@param msg string
---@return string
function handshake.sha1(msg)
  if type(msg) ~= "string" then error("handshake.sha1: msg must be a string", 2) end
  local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local ml = #msg
  msg = msg .. "\128" .. string.rep("\0", (55 - ml) % 64) .. spack(">I8", ml * 8)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do w[i] = sunpack(">I4", msg, chunk + i * 4) end
    for i = 16, 79 do w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1) end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = (b & c) | ((~b) & d), 0x5A827999
      elseif i < 40 then
        f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then
        f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else
        f, k = b ~ c ~ d, 0xCA62C1D6
      end
      local t = (rol(a, 5) + (f & 0xFFFFFFFF) + e + k + w[i]) & 0xFFFFFFFF
      a, b, c, d, e = t, a, rol(b, 30), c, d
    end
    h0 = (h0 + a) & 0xFFFFFFFF
    h1 = (h1 + b) & 0xFFFFFFFF
    h2 = (h2 + c) & 0xFFFFFFFF
    h3 = (h3 + d) & 0xFFFFFFFF
    h4 = (h4 + e) & 0xFFFFFFFF
  end
  return spack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64C = {}
for i = 1, 64 do B64C[i - 1] = sub(B64, i, i) end

---Standard base64 with padding.
---@param s string
---@return string
function handshake.base64(s)
  if type(s) ~= "string" then error("handshake.base64: s must be a string", 2) end
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = B64C[(n >> 18) & 63] .. B64C[(n >> 12) & 63]
      .. (b and B64C[(n >> 6) & 63] or "=") .. (c and B64C[n & 63] or "=")
  end
  return concat(out)
end

---The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key.
---@param key string
---@return string
function handshake.accept_key(key)
  if type(key) ~= "string" then error("handshake.accept_key: key must be a string", 2) end
  return handshake.base64(handshake.sha1(key .. handshake.GUID))
end

-- A key is the base64 encoding of 16 bytes: 22 significant characters and "==" (RFC 6455 4.2.1).
-- The last significant character carries only 2 bits, so it is one of A, Q, g, w.
local function valid_key(key)
  return #key == 24 and find(key, "^[A-Za-z0-9+/]+[AQgw]==$") ~= nil
end

local TCHAR = "^[!#$%%&'*+%-.^_`|~0-9A-Za-z]+$"

---True when `s` is an RFC 9110 token.
---@param s string
---@return boolean
function handshake.is_token(s)
  return type(s) == "string" and find(s, TCHAR) ~= nil
end

local function trim(s)
  return (s:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

---Splits comma-separated header values (from every header of that name) into trimmed, non-empty items.
---@param headers table array of {name, value}, names lower-case
---@param name string lower-case header name
---@return string[]
function handshake.header_list(headers, name)
  local items = {}
  for _, h in ipairs(headers) do
    if h[1] == name then
      for item in gmatch(h[2], "[^,]+") do
        item = trim(item)
        if item ~= "" then items[#items + 1] = item end
      end
    end
  end
  return items
end

local function header_values(headers, name)
  local values = {}
  for _, h in ipairs(headers) do
    if h[1] == name then values[#values + 1] = h[2] end
  end
  return values
end

local function has_token(headers, name, token)
  for _, item in ipairs(handshake.header_list(headers, name)) do
    if lower(item) == token then return true end
  end
  return false
end

---True when the request asks to upgrade to WebSocket (the HTTP side hands such requests over).
---@param headers table array of {name, value}, names lower-case
---@return boolean
function handshake.is_upgrade(headers)
  return has_token(headers, "upgrade", "websocket")
end

---@class luvicorn.websocket.HandshakeRequest
---@field key string
---@field subprotocols string[]
---@field extensions string[] raw Sec-WebSocket-Extensions items

---Validates an upgrade request. On failure returns nil, status (400 or 426), extra response headers and a
---short reason for the body.
---@param method string
---@param http_version string "1.0" / "1.1"
---@param headers table array of {name, value}, names lower-case
---@return luvicorn.websocket.HandshakeRequest|nil
---@return integer|nil status
---@return table|nil headers
---@return string|nil reason
function handshake.check(method, http_version, headers)
  if type(headers) ~= "table" then error("handshake.check: headers must be an array of pairs", 2) end
  local function bad(reason) return nil, 400, {}, reason end
  if method ~= "GET" then return bad("WebSocket upgrade requires GET") end
  if http_version ~= "1.1" and http_version ~= "2" and http_version ~= "2.0" then
    return bad("WebSocket upgrade requires HTTP/1.1")
  end
  if not has_token(headers, "upgrade", "websocket") then return bad("missing Upgrade: websocket") end
  if not has_token(headers, "connection", "upgrade") then return bad("missing Connection: upgrade") end
  local versions = header_values(headers, "sec-websocket-version")
  if #versions == 0 then return bad("missing Sec-WebSocket-Version") end
  if #versions > 1 or trim(versions[1]) ~= "13" then
    return nil, 426, { { "sec-websocket-version", "13" } }, "unsupported WebSocket version"
  end
  local keys = header_values(headers, "sec-websocket-key")
  if #keys ~= 1 then return bad("missing or repeated Sec-WebSocket-Key") end
  local key = trim(keys[1])
  if not valid_key(key) then return bad("invalid Sec-WebSocket-Key") end
  local subprotocols = handshake.header_list(headers, "sec-websocket-protocol")
  for _, p in ipairs(subprotocols) do
    if not handshake.is_token(p) then return bad("invalid Sec-WebSocket-Protocol") end
  end
  return {
    key = key,
    subprotocols = subprotocols,
    extensions = header_values(headers, "sec-websocket-extensions"),
  }
end

---Raises an error naming `fn` when `list` is not a valid array of header pairs (nil is allowed).
---@param fn string the API function to blame
---@param list table|nil
---@param level? integer error level, default 2 (the caller of check_headers)
function handshake.check_headers(fn, list, level)
  level = (level or 2) + 1
  if list == nil then return end
  if type(list) ~= "table" then error(fn .. ": headers must be an array of {name, value}", level) end
  for i, h in ipairs(list) do
    if type(h) ~= "table" or type(h[1]) ~= "string" or type(h[2]) ~= "string" then
      error(("%s: headers[%d] must be a {name, value} pair of strings"):format(fn, i), level)
    end
    if not handshake.is_token(h[1]) then error(("%s: invalid header name %q"):format(fn, h[1]), level) end
    if find(h[2], "[%z\r\n]") then error(("%s: invalid value for header %q"):format(fn, h[1]), level) end
  end
end

local REASONS = {
  [101] = "Switching Protocols", [200] = "OK", [201] = "Created", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [409] = "Conflict", [410] = "Gone",
  [426] = "Upgrade Required", [429] = "Too Many Requests", [500] = "Internal Server Error",
  [501] = "Not Implemented", [503] = "Service Unavailable",
}

---Builds an HTTP/1.1 response head.
---@param status integer
---@param ... table|string|nil arrays of {name, value} pairs (or ready "name: value\r\n" lines), in order
---@return string
function handshake.response_head(status, ...)
  local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Unknown") }
  for i = 1, select("#", ...) do
    local list = select(i, ...)
    if type(list) == "string" then
      out[#out + 1] = list
    elseif list then
      for _, h in ipairs(list) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
    end
  end
  out[#out + 1] = "\r\n"
  return concat(out)
end

---Builds the 101 response.
---@param key string the client's Sec-WebSocket-Key
---@param subprotocol? string
---@param extensions? string the Sec-WebSocket-Extensions value, if any
---@param extra? table app headers
---@param defaults? table server headers (server, date, --header)
---@return string
function handshake.accept_response(key, subprotocol, extensions, extra, defaults)
  local h = {
    { "upgrade", "websocket" },
    { "connection", "Upgrade" },
    { "sec-websocket-accept", handshake.accept_key(key) },
  }
  if subprotocol then h[#h + 1] = { "sec-websocket-protocol", subprotocol } end
  if extensions then h[#h + 1] = { "sec-websocket-extensions", extensions } end
  return handshake.response_head(101, defaults, h, extra)
end

---Builds a complete short text response that closes the connection (rejections).
---@param status integer
---@param body string
---@param extra? table
---@param defaults? table
---@return string
function handshake.error_response(status, body, extra, defaults)
  local h = {
    { "content-type", "text/plain; charset=utf-8" },
    { "content-length", tostring(#body) },
    { "connection", "close" },
  }
  return handshake.response_head(status, defaults, extra, h) .. body
end

return handshake
