-- RFC 7692 permessage-deflate: offer parsing, the server's answer, and per-message compression through the
-- luvrs primitives uv.new_deflate / uv.new_inflate. Without them the extension is never negotiated.
local deflate = {}

local find, sub, gsub, lower = string.find, string.sub, string.gsub, string.lower

local TAIL = "\0\0\255\255"

---True when the loop module offers the streaming deflate/inflate primitive.
---@param uv table|nil
---@return boolean
function deflate.available(uv)
  return type(uv) == "table" and uv.new_deflate ~= nil and uv.new_inflate ~= nil
end

-- Splits on `sep` outside double-quoted strings.
local function split(s, sep)
  local items, start, i, n, quoted = {}, 1, 1, #s, false
  while i <= n do
    local c = sub(s, i, i)
    if quoted then
      if c == "\\" then
        i = i + 1
      elseif c == '"' then
        quoted = false
      end
    elseif c == '"' then
      quoted = true
    elseif c == sep then
      items[#items + 1] = sub(s, start, i - 1)
      start = i + 1
    end
    i = i + 1
  end
  items[#items + 1] = sub(s, start)
  return items
end

local function trim(s)
  return (gsub(gsub(s, "^[ \t]+", ""), "[ \t]+$", ""))
end

local TOKEN = "^[!#$%%&'*+%-.^_`|~0-9A-Za-z]+$"

---@class luvicorn.websocket.ExtensionOffer
---@field name string lower-case
---@field params table<string, string|true> parameter values (true when given without a value)
---@field valid boolean false when the syntax was wrong or a parameter was repeated

---Parses Sec-WebSocket-Extensions header values into offers, in order.
---@param values string[] every Sec-WebSocket-Extensions header value
---@return luvicorn.websocket.ExtensionOffer[]
function deflate.parse_offers(values)
  if type(values) ~= "table" then error("deflate.parse_offers: values must be an array of strings", 2) end
  local offers = {}
  for _, value in ipairs(values) do
    for _, item in ipairs(split(value, ",")) do
      item = trim(item)
      if item ~= "" then
        local parts = split(item, ";")
        local name = trim(parts[1])
        local offer = { name = lower(name), params = {}, valid = find(name, TOKEN) ~= nil }
        for i = 2, #parts do
          local p = trim(parts[i])
          local k, v = p:match("^([^=]-)[ \t]*=[ \t]*(.*)$")
          if not k then k, v = p, true end
          k = lower(k)
          if type(v) == "string" and sub(v, 1, 1) == '"' then
            if #v < 2 or sub(v, -1) ~= '"' then
              offer.valid = false
            else
              v = gsub(sub(v, 2, -2), "\\(.)", "%1")
            end
          end
          if not find(k, TOKEN) or (type(v) == "string" and not find(v, TOKEN)) then offer.valid = false end
          if offer.params[k] ~= nil then offer.valid = false end
          offer.params[k] = v
        end
        offers[#offers + 1] = offer
      end
    end
  end
  return offers
end

local BITS = { ["8"] = 8, ["9"] = 9, ["10"] = 10, ["11"] = 11, ["12"] = 12, ["13"] = 13, ["14"] = 14, ["15"] = 15 }

---@class luvicorn.websocket.DeflateParams
---@field server_no_context_takeover boolean
---@field client_no_context_takeover boolean
---@field server_max_window_bits integer window the server compresses with
---@field client_max_window_bits integer|nil limit the server asked of the client

-- Checks one permessage-deflate offer; returns the agreed parameters or nil when it must be declined.
local function accept_offer(offer, opts)
  if not offer.valid then return nil end
  local p = {
    server_no_context_takeover = opts.server_no_context_takeover or false,
    client_no_context_takeover = false,
    server_max_window_bits = opts.server_max_window_bits or 15,
  }
  local client_bits_offered = false
  for k, v in pairs(offer.params) do
    if k == "server_no_context_takeover" then
      if v ~= true then return nil end
      p.server_no_context_takeover = true
    elseif k == "client_no_context_takeover" then
      if v ~= true then return nil end
      p.client_no_context_takeover = true
    elseif k == "server_max_window_bits" then
      local bits = BITS[v]
      if not bits then return nil end
      -- zlib cannot produce a raw deflate stream with a 256-byte window, so such an offer is declined.
      if bits < 9 then return nil end
      p.server_max_window_bits = math.min(p.server_max_window_bits, bits)
    elseif k == "client_max_window_bits" then
      if v ~= true and not BITS[v] then return nil end
      client_bits_offered = true
    else
      return nil
    end
  end
  if client_bits_offered and opts.client_max_window_bits then
    p.client_max_window_bits = opts.client_max_window_bits
  end
  return p
end

---Picks the first acceptable permessage-deflate offer. Returns the Sec-WebSocket-Extensions response value
---and the parameters, or nil when nothing is negotiated.
---@param values string[] the request's Sec-WebSocket-Extensions header values
---@param opts? table server_no_context_takeover (boolean), server_max_window_bits, client_max_window_bits (9..15)
---@return string|nil response
---@return luvicorn.websocket.DeflateParams|nil params
function deflate.negotiate(values, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("deflate.negotiate: opts must be a table", 2) end
  for _, offer in ipairs(deflate.parse_offers(values)) do
    if offer.name == "permessage-deflate" then
      local p = accept_offer(offer, opts)
      if p then
        local r = { "permessage-deflate" }
        if p.server_no_context_takeover then r[#r + 1] = "server_no_context_takeover" end
        if p.client_no_context_takeover then r[#r + 1] = "client_no_context_takeover" end
        if offer.params.server_max_window_bits or p.server_max_window_bits < 15 then
          r[#r + 1] = "server_max_window_bits=" .. p.server_max_window_bits
        end
        if p.client_max_window_bits then r[#r + 1] = "client_max_window_bits=" .. p.client_max_window_bits end
        return table.concat(r, "; "), p
      end
    end
  end
  return nil
end

---@class luvicorn.websocket.Deflate
local Codec = { __name = "luvicorn.websocket.Deflate" }
Codec.__index = Codec

---Creates the compressor/decompressor pair for one connection.
---@param uv table loop module offering new_deflate/new_inflate
---@param params luvicorn.websocket.DeflateParams
---@param max_size? integer largest decompressed message
---@param level? integer compression level 0..9, default 6
---@return luvicorn.websocket.Deflate
function deflate.new(uv, params, max_size, level)
  if not deflate.available(uv) then error("deflate.new: uv has no new_deflate/new_inflate", 2) end
  if type(params) ~= "table" then error("deflate.new: params must be a table", 2) end
  -- A primitive that cannot honour a smaller window (luvrs' pure-Rust one: ENOTSUP) gives no deflater;
  -- messages then go out uncompressed, which RFC 7692 always allows.
  local d = uv.new_deflate { format = "raw", level = level or 6, window_bits = params.server_max_window_bits or 15 }
  return setmetatable({
    params = params,
    max_size = max_size,
    d = d or nil,
    -- Always the largest window: it decodes whatever window the client chose.
    i = uv.new_inflate { format = "raw", window_bits = 15, max_output = max_size },
  }, Codec)
end

---Compresses one message into the payload of its frame(s) (RSV1 set on the first); nil when this
---connection sends uncompressed messages.
---@param msg string
---@return string|nil
function Codec:compress(msg)
  if not self.d then return nil end
  local out = self.d:write(msg, "sync")
  -- Every sync flush ends in an empty stored block; RFC 7692 7.2.1 removes its last four bytes.
  if sub(out, -4) == TAIL then out = sub(out, 1, -5) end
  if self.params.server_no_context_takeover then self.d:reset() end
  return out
end

---Decompresses one message. On failure returns nil, close code (1009 over max_size, 1007 for corrupt
---data) and a message.
---@param payload string
---@return string|nil
---@return integer|nil
---@return string|nil
function Codec:decompress(payload)
  local out, err = self.i:write(payload .. TAIL)
  if self.params.client_no_context_takeover then self.i:reset() end
  if not out then
    if err == "EMSGSIZE" or (type(err) == "string" and find(err, "EMSGSIZE", 1, true)) then
      return nil, 1009, "decompressed message over the size limit"
    end
    return nil, 1007, "invalid compressed data"
  end
  if self.max_size and #out > self.max_size then return nil, 1009, "decompressed message over the size limit" end
  return out
end

return deflate
