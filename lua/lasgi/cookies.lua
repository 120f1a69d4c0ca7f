-- Cookie header parsing and Set-Cookie serialisation (RFC 6265).
local M = {}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Values with characters outside RFC 6265's cookie-octet are sent quoted with backslash escapes (as
-- Python's http.cookies does); parse() undoes it.
local function needs_quote(v)
  return v:find('[%c%s",;\\\127-\255]') ~= nil
end

local function quote(v)
  if not needs_quote(v) then return v end
  return '"' .. v:gsub('[%c"\\\127-\255]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    return ("\\%03o"):format(c:byte())
  end) .. '"'
end

local function unquote(v)
  if #v < 2 or v:sub(1, 1) ~= '"' or v:sub(-1) ~= '"' then return v end
  v = v:sub(2, -2)
  v = v:gsub("\\([0-3][0-7][0-7])", function(o) return string.char(tonumber(o, 8)) end)
  return (v:gsub("\\(.)", "%1"))
end

---Parses a Cookie header into a map name -> value (the first occurrence of a name wins).
---@param header string|nil
---@return table<string,string>
function M.parse(header)
  local out = {}
  if not header then return out end
  local pos, n = 1, #header
  while pos <= n do
    local k_end = header:find("[=;]", pos)
    local key, value
    if not k_end or header:sub(k_end, k_end) == ";" then
      -- A bare value without '=' is kept under the empty name, as browsers do.
      local stop = k_end or (n + 1)
      key, value = "", header:sub(pos, stop - 1)
      pos = stop + 1
    else
      key = header:sub(pos, k_end - 1)
      local vstart = header:find("[^ \t]", k_end + 1) or (n + 1)
      if header:sub(vstart, vstart) == '"' then
        -- A quoted value may hold ';': find the closing quote, skipping escaped characters.
        local j = vstart + 1
        while j <= n do
          local c = header:sub(j, j)
          if c == "\\" then j = j + 2
          elseif c == '"' then break
          else j = j + 1 end
        end
        value = header:sub(vstart, j)
        pos = (header:find(";", j + 1, true) or n) + 1
      else
        local stop = header:find(";", k_end + 1, true) or (n + 1)
        value = header:sub(k_end + 1, stop - 1)
        pos = stop + 1
      end
    end
    key, value = trim(key), trim(value)
    if (key ~= "" or value ~= "") and out[key] == nil then out[key] = unquote(value) end
  end
  return out
end

local days = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local months = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

---Formats a Unix time as an HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT").
---@param t number
---@return string
function M.http_date(t)
  local d = os.date("!*t", math.floor(t))
  return ("%s, %02d %s %04d %02d:%02d:%02d GMT"):format(days[d.wday], d.day, months[d.month], d.year,
    d.hour, d.min, d.sec)
end

local month_index = {}
for i, m in ipairs(months) do month_index[m] = i end

---Parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into Unix time; nil if malformed.
---@param s string
---@return integer|nil
function M.parse_http_date(s)
  if not s then return nil end
  local d, mon, y, h, mi, sec = s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not month_index[mon] then return nil end
  -- Days from the civil date (Howard Hinnant's algorithm), so no time zone is involved.
  local yy, m, dd = tonumber(y), month_index[mon], tonumber(d)
  if m <= 2 then yy = yy - 1 end
  local era = (yy >= 0 and yy or yy - 399) // 400
  local yoe = yy - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + dd - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days_since = era * 146097 + doe - 719468
  return days_since * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

local samesite_values = { lax = "lax", strict = "strict", none = "none" }

---Builds a Set-Cookie value.
---opts: max_age (seconds), expires (seconds from now as a number, or a preformatted date string),
---path (default "/"), domain, secure, httponly, samesite ("lax" default, "strict", "none", false to omit),
---partitioned (requires secure).
---@param key string
---@param value? string
---@param opts? table
---@return string
function M.serialize(key, value, opts)
  if type(key) ~= "string" or key == "" or key:find("[%c%s()<>@,;:\\\"/%[%]?={}\127-\255]") then
    error("set_cookie: argument 'key' must be a cookie name token", 2)
  end
  value = value == nil and "" or tostring(value)
  opts = opts or {}
  local out = { key .. "=" .. quote(value) }
  if opts.domain then out[#out + 1] = "Domain=" .. opts.domain end
  if opts.expires ~= nil then
    local e = opts.expires
    if type(e) == "number" then e = M.http_date(os.time() + e)
    elseif type(e) ~= "string" then error("set_cookie: argument 'expires' must be a number or string", 2) end
    out[#out + 1] = "expires=" .. e
  end
  if opts.httponly then out[#out + 1] = "HttpOnly" end
  if opts.max_age ~= nil then
    if math.type(opts.max_age) ~= "integer" then error("set_cookie: argument 'max_age' must be an integer", 2) end
    out[#out + 1] = "Max-Age=" .. opts.max_age
  end
  local path = opts.path == nil and "/" or opts.path
  if path then out[#out + 1] = "Path=" .. path end
  local samesite = opts.samesite == nil and "lax" or opts.samesite
  if samesite then
    local s = samesite_values[tostring(samesite):lower()]
    if not s then error("set_cookie: argument 'samesite' must be 'strict', 'lax' or 'none'", 2) end
    out[#out + 1] = "SameSite=" .. s
  end
  if opts.secure then out[#out + 1] = "Secure" end
  if opts.partitioned then
    if not opts.secure then error("set_cookie: argument 'partitioned' requires 'secure'", 2) end
    out[#out + 1] = "Partitioned"
  end
  return table.concat(out, "; ")
end

return M
