--- Proxy headers: which peers are trusted proxies (`--forwarded-allow-ips`), and what client and scheme
--- the headers of a trusted proxy (`Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`) give a request.
---
--- Pure Lua, no loop: `parse` builds a trust list once, the HTTP protocol asks `peer_trusted` once per
--- connection and calls `resolve` only for requests from a trusted peer that carry proxy headers.
---
--- Addresses are compared as 16-byte strings: IPv6 as such, IPv4 as its IPv4-mapped IPv6 form
--- (`::ffff:a.b.c.d`), so every textual form of an address, and an IPv4 peer seen through a dual-stack
--- socket, compare equal. An IPv4 network `a.b.c.d/n` is the IPv6 network `::ffff:a.b.c.d/(96+n)`.
---@class luvicorn.proxy
local M = {}

local find, sub, byte, char, lower, match, gmatch, format =
  string.find, string.sub, string.byte, string.char, string.lower, string.match, string.gmatch, string.format
local tonumber, type, setmetatable = tonumber, type, setmetatable

local OPTION = "--forwarded-allow-ips"
local V4_PREFIX = "\0\0\0\0\0\0\0\0\0\0\255\255"
local CACHE_MAX = 4096 -- hop texts remembered per trust list (cleared when full: texts come from clients)

---------------------------------------------------------------------------------------------------
-- Addresses

local function v4_bytes(s)
  local a, b, c, d = match(s, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if not a then return nil end
  local out = {}
  for i, part in ipairs({ a, b, c, d }) do
    -- a leading zero is octal to some parsers and decimal to others: refuse rather than guess
    if #part > 1 and byte(part) == 48 then return nil end
    local n = tonumber(part)
    if n > 255 then return nil end
    out[i] = n
  end
  return char(out[1], out[2], out[3], out[4])
end

-- "a:b:c" -> array of group values; "" -> {}; nil for an empty or over-long group
local function hex_groups(s, into)
  if s == "" then return into end
  for g in gmatch(s .. ":", "([^:]*):") do
    if #g < 1 or #g > 4 or find(g, "[^%x]") then return nil end
    into[#into + 1] = tonumber(g, 16)
  end
  return into
end

local function v6_bytes(s)
  local pct = find(s, "%", 1, true)
  if pct then
    -- a zone (fe80::1%eth0) names an interface, not part of the address
    if pct == #s then return nil end
    s = sub(s, 1, pct - 1)
  end
  if s == "" or find(s, "[^%x:%.]") then return nil end
  if find(s, ".", 1, true) then
    -- embedded IPv4 as the last 32 bits: rewrite it as two hex groups
    local colon = match(s, "^.*():")
    if not colon then return nil end
    local v4 = v4_bytes(sub(s, colon + 1))
    if not v4 then return nil end
    local b1, b2, b3, b4 = byte(v4, 1, 4)
    s = sub(s, 1, colon) .. format("%x:%x", b1 * 256 + b2, b3 * 256 + b4)
  end
  local groups
  local dbl = find(s, "::", 1, true)
  if dbl then
    if find(s, "::", dbl + 1, true) then return nil end
    local left = hex_groups(sub(s, 1, dbl - 1), {})
    local right = left and hex_groups(sub(s, dbl + 2), {})
    if not right or #left + #right > 7 then return nil end
    groups = left
    for _ = 1, 8 - #left - #right do groups[#groups + 1] = 0 end
    for i = 1, #right do groups[#groups + 1] = right[i] end
  else
    groups = hex_groups(s, {})
    if not groups or #groups ~= 8 then return nil end
  end
  local out = {}
  for i = 1, 8 do
    local g = groups[i]
    out[2 * i - 1], out[2 * i] = g >> 8, g & 255
  end
  return char(table.unpack(out))
end

---The 16-byte form of an IPv4 or IPv6 address in text (IPv4 mapped into IPv6), or nil.
---@param text string e.g. "10.0.0.1", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "fe80::1%eth0"
---@return string|nil
function M.address(text)
  if type(text) ~= "string" then return nil end
  if find(text, ":", 1, true) then return v6_bytes(text) end
  local v4 = v4_bytes(text)
  return v4 and V4_PREFIX .. v4 or nil
end
local address = M.address

local function in_network(ip, net, bits)
  local full = bits // 8
  if full > 0 and sub(ip, 1, full) ~= sub(net, 1, full) then return false end
  local rest = bits % 8
  if rest == 0 then return true end
  local mask = (0xFF << (8 - rest)) & 0xFF
  return byte(ip, full + 1) & mask == byte(net, full + 1)
end

---------------------------------------------------------------------------------------------------
-- The trust list

local Trust = {}
Trust.__index = Trust
Trust.__name = "luvicorn.proxy.Trust"

local function bad_entry(entry, why)
  return format("%s: invalid entry '%s': %s", OPTION, entry, why)
end

local EXPECTED = "expected an IPv4 or IPv6 address, a CIDR network (10.0.0.0/8, fd00::/8), '*' or 'unix:'"

local function add_entry(t, entry)
  if entry == "*" then
    t.all = true
    return true
  elseif entry == "unix:" then
    t.unix = true
    return true
  end
  local addr_text, bits_text = match(entry, "^([^/]*)/(.*)$")
  if not addr_text then
    local ip = address(entry)
    if not ip then return nil, bad_entry(entry, EXPECTED) end
    t.exact[ip] = true
    return true
  end
  local ip = address(addr_text)
  if not ip then return nil, bad_entry(entry, EXPECTED) end
  local v4 = not find(addr_text, ":", 1, true)
  local max = v4 and 32 or 128
  local bits = find(bits_text, "^%d%d?%d?$") and tonumber(bits_text)
  if not bits or bits > max then
    return nil, bad_entry(entry, format("the prefix length must be a number from 0 to %d", max))
  end
  if v4 then bits = bits + 96 end
  local full, rest = bits // 8, bits % 8
  local clean = sub(ip, 1, full)
  if rest > 0 then clean = clean .. char(byte(ip, full + 1) & ((0xFF << (8 - rest)) & 0xFF)) end
  if clean .. ("\0"):rep(16 - #clean) ~= ip then
    -- 10.0.0.1/8 is more likely a typo for a single address than a wish to trust all of 10/8
    return nil, bad_entry(entry, "address bits are set beyond the prefix length")
  end
  t.nets[#t.nets + 1] = { ip, bits }
  return true
end

---Parses a trust list: an array of entries, or one comma-separated string. Entries: IPv4/IPv6
---addresses, CIDR networks of either family, `*` (trust every peer and every hop) and `unix:` (trust
---peers connected over a Unix socket). Returns nil and a message naming --forwarded-allow-ips and the
---entry for an invalid one.
---@param list string|string[]
---@return luvicorn.proxy.Trust|nil trust
---@return string|nil err
function M.parse(list)
  if type(list) == "string" then
    local items = {}
    for item in gmatch(list, "[^,]+") do items[#items + 1] = item end
    list = items
  elseif type(list) ~= "table" then
    return nil, format("%s: expected a list of addresses, got %s", OPTION, type(list))
  end
  local t = setmetatable({ all = false, unix = false, exact = {}, nets = {}, cache = {}, ncache = 0 }, Trust)
  for i = 1, #list do
    local entry = list[i]
    if type(entry) ~= "string" then
      return nil, format("%s: entry %d is a %s, not a string", OPTION, i, type(entry))
    end
    entry = match(entry, "^%s*(.-)%s*$")
    if entry ~= "" then
      local ok, err = add_entry(t, entry)
      if not ok then return nil, err end
    end
  end
  return t
end

---Whether an address (16-byte form) is in the list (`*` included).
---@param ip string|nil
---@return boolean
function Trust:contains(ip)
  if self.all then return true end
  if not ip then return false end
  if self.exact[ip] then return true end
  local nets = self.nets
  for i = 1, #nets do
    local n = nets[i]
    if in_network(ip, n[1], n[2]) then return true end
  end
  return false
end

---Whether the immediate peer of a connection is a trusted proxy. A peer with no client address on a
---server address with no port is on a Unix socket (LASGI's `{ path, nil }`): trusted by `unix:` or `*`.
---@param client table|nil `{ host, port }` of the peer
---@param server table|nil `{ host, port }` or `{ path, nil }` of the listening socket
---@return boolean
function Trust:peer_trusted(client, server)
  if client == nil then
    local unix = server == nil or server[2] == nil
    return unix and (self.unix or self.all)
  end
  return self:trusts(client[1])
end

---------------------------------------------------------------------------------------------------
-- Nodes: `for=` values and X-Forwarded-For items

local OBF = "^_[%w%._%-]+$"

local function node_port(p)
  if p == nil then return nil end
  if find(p, "^%d%d?%d?%d?%d?$") then
    local n = tonumber(p)
    if n <= 65535 then return n end
    return false
  end
  if find(p, OBF) then return 0 end -- an obfuscated port: there is one, it is not disclosed
  return false
end

---Parses a node (RFC 7239 `node`, also the lenient forms found in X-Forwarded-For): `1.2.3.4`,
---`1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, a bare `2001:db8::1`. Returns the host text (no
---brackets, no port), the port (nil when none given) and the 16-byte address; nil for `unknown`,
---obfuscated identifiers (`_hidden`) and anything else.
---@param text string
---@return string|nil host
---@return integer|nil port
---@return string|nil ip
function M.node(text)
  local host, port
  if byte(text) == 91 then -- "["
    local close = find(text, "]", 2, true)
    if not close then return nil end
    host = sub(text, 2, close - 1)
    if close < #text then
      if byte(text, close + 1) ~= 58 then return nil end
      port = sub(text, close + 2)
    end
    if not find(host, ":", 1, true) then return nil end -- brackets hold IPv6 only
  else
    local colon = find(text, ":", 1, true)
    if colon and not find(text, ":", colon + 1, true) then
      host, port = sub(text, 1, colon - 1), sub(text, colon + 1)
      if find(host, ":", 1, true) then return nil end
    else
      host = text -- no colon: IPv4 or a name; several: a bare IPv6 address, which cannot carry a port
    end
  end
  local ip = address(host)
  if not ip then return nil end
  local p = node_port(port)
  if p == false then return nil end
  return host, p, ip
end
local node = M.node

---Whether a node in text (an address, or a node as `M.node` reads it) is in the list; `*` trusts any
---text, even one that is not an address. Remembered per text.
---@param text string
---@return boolean
function Trust:trusts(text)
  if self.all then return true end
  local hit = self.cache[text]
  if hit ~= nil then return hit end
  local _, _, ip = node(text)
  hit = self:contains(ip)
  if self.ncache >= CACHE_MAX then self.cache, self.ncache = {}, 0 end
  self.cache[text] = hit
  self.ncache = self.ncache + 1
  return hit
end

---------------------------------------------------------------------------------------------------
-- The Forwarded header (RFC 7239)

local TOKEN_AT = "^[!#$%%&'*+%-.^_`|~%w]+"
-- an unquoted value: a token, or (leniently) an address with a port or an IPv6 one, which RFC 7239
-- wants quoted but proxy configurations such as nginx's `for=$remote_addr` write bare
local VALUE_AT = "^[!#$%%&'*+%-.^_`|~%w:%[%]]+"

-- Reads a quoted-string starting at the quote at `pos`; returns the unescaped value and the position
-- after the closing quote, or nil when it never closes.
local function quoted(s, pos)
  local parts, i = {}, pos + 1
  while true do
    local j = find(s, '["\\]', i)
    if not j then return nil end
    parts[#parts + 1] = sub(s, i, j - 1)
    if byte(s, j) == 34 then return table.concat(parts), j + 1 end
    if j == #s then return nil end
    parts[#parts + 1] = sub(s, j + 1, j + 1) -- quoted-pair: the next byte stands for itself
    i = j + 2
  end
end

-- Parses one field line into `out` (elements appended). A malformed element is kept, marked `bad`, and
-- parsing resumes after the next comma: the elements on its right (the nearer proxies) still count.
local function parse_line(s, out)
  local pos, n = 1, #s
  while pos <= n do
    pos = find(s, "[^ \t]", pos) or n + 1
    if pos > n then break end
    if byte(s, pos) == 44 then -- an empty list element
      pos = pos + 1
    else
      local el, bad = {}, false
      while true do
        pos = find(s, "[^ \t]", pos) or n + 1
        local c = byte(s, pos)
        if c == nil or c == 44 then break end
        if c == 59 then -- ";" (an empty pair is allowed)
          pos = pos + 1
        else
          local ns, ne = find(s, TOKEN_AT, pos)
          if not ns or byte(s, ne + 1) ~= 61 then bad = true; break end -- "="
          local name = lower(sub(s, ns, ne))
          local value
          pos = ne + 2
          if byte(s, pos) == 34 then
            local v, after = quoted(s, pos)
            if not v then pos = pos + 1; bad = true; break end
            value, pos = v, after
          else
            local vs, ve = find(s, VALUE_AT, pos)
            if not vs then bad = true; break end
            value, pos = sub(s, vs, ve), ve + 1
          end
          if el[name] ~= nil then bad = true; break end -- a parameter twice: which one is meant?
          el[name] = value
          pos = find(s, "[^ \t]", pos) or n + 1
          c = byte(s, pos)
          if c ~= nil and c ~= 44 and c ~= 59 then bad = true; break end
        end
      end
      if bad then
        el.bad = true
        pos = find(s, ",", pos, true) or n + 1
      end
      out[#out + 1] = el
      pos = pos + 1
    end
  end
  return out
end

---Parses Forwarded field values: one string, several lines separated by "\n" (each line parsed on its
---own, so a broken quote in one cannot swallow the next), or an array of lines. Returns the elements,
---left (farthest from the server) to right, each a table of its parameters by lower-case name with
---quoted strings unescaped (`for`, `proto`, `host`, `by`, extensions), plus `bad = true` when the
---element was malformed. Never raises on any string.
---@param value string|string[]
---@return table[] elements
function M.parse_forwarded(value)
  local out = {}
  if type(value) == "table" then
    for i = 1, #value do parse_line(value[i], out) end
  elseif find(value, "\n", 1, true) then
    for line in gmatch(value, "[^\n]+") do parse_line(line, out) end
  else
    parse_line(value, out)
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- Choosing the client and the scheme

-- http/https as the HTTP scope has them (the WebSocket protocol maps them to ws/wss)
local SCHEMES = { http = "http", https = "https", ws = "http", wss = "https" }

local function scheme_of(v)
  if v == nil then return nil end
  return SCHEMES[lower(match(v, "^%s*(.-)%s*$"))]
end

-- Walks the hops from the right (`texts[i]`: hop i's node text, nil when unknown). Returns the index of
-- the first hop that is not trusted; all trusted: 1.
local function choose(trust, n, texts)
  if trust.all then return 1 end
  for i = n, 2, -1 do
    local text = texts[i]
    if not (text and trust:trusts(text)) then return i end
  end
  return 1
end

local function client_of(text)
  if not text then return nil end
  local host, port = node(text)
  if not host then return nil end
  return { host, port or 0 }
end

-- The non-empty, trimmed items of a comma-separated field value, and their count.
local function items(value)
  local list, n = {}, 0
  if value then
    for item in gmatch(value, "[^,]+") do
      item = match(item, "^%s*(.-)%s*$")
      if item ~= "" then
        n = n + 1
        list[n] = item
      end
    end
  end
  return list, n
end

---The client and scheme of a request from a trusted peer. X-Forwarded-For/-Proto, when either is present,
---win over Forwarded (which is then ignored): proxies append to X-Forwarded-For, but nginx and most
---others pass a client's own Forwarded header on untouched, so Forwarded is believed only from a proxy
---chain that sends no X-Forwarded-* at all. The client is the first hop, walking from
---the right, that is not a trusted address (all trusted: the leftmost; with `*`: always the leftmost);
---a hop that is not an address (`unknown`, `_hidden`, garbage, an element without `for=`) is never
---trusted, and when it is the one chosen the client is nil (unknown). A Forwarded header in which no
---element has `for=` leaves the client as it was. The scheme is the proto of the chosen hop, else of the nearest hop
---on its right that has one; with X-Forwarded-Proto, the value of the chosen hop when there are as many
---values as X-Forwarded-For hops, else the rightmost value. Only http/https count (ws/wss mean the same).
---@param trust luvicorn.proxy.Trust
---@param client table|nil the peer's `{ host, port }`, kept when the headers do not name a client
---@param scheme string the connection's own scheme, kept when the headers do not give a valid one
---@param forwarded string|nil Forwarded field lines joined with "\n"
---@param xff string|nil X-Forwarded-For field lines joined with ","
---@param xfp string|nil X-Forwarded-Proto field lines joined with ","
---@return table|nil client
---@return string scheme
function M.resolve(trust, client, scheme, forwarded, xff, xfp)
  if forwarded and not xff and not xfp then
    local els = M.parse_forwarded(forwarded)
    local n = #els
    if n > 0 then
      local texts, any_for = {}, false
      for i = 1, n do
        local f = els[i]["for"]
        if f ~= nil then any_for = true end
        if not els[i].bad then texts[i] = f end
      end
      local from = n
      if any_for then
        from = choose(trust, n, texts)
        client = client_of(texts[from])
      end
      for i = from, n do
        local s = not els[i].bad and scheme_of(els[i].proto)
        if s then return client, s end
      end
      return client, scheme
    end
  end
  local hops, nhops = items(xff)
  local from
  if nhops > 0 then
    from = choose(trust, nhops, hops)
    client = client_of(hops[from])
  end
  if xfp then
    local protos, np = items(xfp)
    if np > 0 then
      local s = scheme_of(protos[(from and np == nhops) and from or np])
      if s then scheme = s end
    end
  end
  return client, scheme
end

return M
