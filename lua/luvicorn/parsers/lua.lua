--- The pure-Lua HTTP/1.x request-head parser, and the contract every head parser follows.
---
--- ## Contract (shared with the native `uv.http_parse_head` of luvrs)
---
--- ```
--- parse_head(buf, max_head, max_headers)
---   -> nil                                       incomplete, within limits: call again with more bytes
---   -> consumed, method, target, http_minor, headers     success
---   -> false, status, reason                     rejection
--- ```
---
--- * `buf` (string) holds every byte received so far from the start of the request (after the previous
---   request, if any). `max_head` (integer) bounds the head in bytes, `max_headers` the number of fields.
--- * Leading empty lines (`"\r\n"` pairs) are skipped (RFC 9112 §2.2); they count in `consumed` and in
---   the head size. Call `s` the index of the first byte after them.
--- * The head ends at the first `"\r\n\r\n"` found from `s`; `consumed` is the index of its last byte (so
---   the body, if any, starts at `consumed + 1`).
--- * `method` and `target` are returned as sent (`target` is not decoded), `http_minor` is the integer 0
---   or 1. `headers` is a LASGI array of `{ name, value }` pairs in arrival order, duplicates kept, the name
---   lower-cased (ASCII), the value with leading and trailing spaces and tabs removed. Empty values are
---   allowed. Field-level checks (Host, Content-Length, Transfer-Encoding) are the caller's job.
---
--- Checks, in this order (the first that fails decides; the reasons are exact strings):
---
--- When no `"\r\n\r\n"` is found (incomplete):
--- 1. a byte of `buf[s..]` in 0x00-0x08, 0x0B, 0x0C, 0x0E-0x1F or 0x7F:
---    `false, 400, "Invalid character in request head"`;
--- 2. an LF in `buf[s..]` not preceded by CR: `false, 400, "Invalid line ending in request head"`;
--- 3. `#buf > max_head`: let `r` be the index of the first `"\r\n"` at or after `s`; when there is none or
---    `r + 1 > max_head`: `false, 414, "Request line too long"`, else `false, 431, "Request head too large"`;
--- 4. otherwise `nil`.
---
--- When the head is complete (`e` = index of the `"\r\n\r\n"`, the head is `buf[1 .. e + 3]`):
--- 1. `e + 3 > max_head`: 414 or 431 exactly as in step 3 above;
--- 2. the request line must be `method SP target SP "HTTP/" DIGIT "." DIGIT CRLF`, with method one or
---    more tchar (RFC 9110 token) and target one or more bytes in 0x21-0x7E or 0x80-0xFF. When it matches
---    with a version other than 1.0 or 1.1, or when it matches the same shape with `HTTP/1*DIGIT.1*DIGIT`:
---    `false, 505, "Unsupported HTTP version"`; when it does not match: `false, 400, "Invalid request line"`;
--- 3. each following line up to the head's end must be `name ":" *(SP / HTAB) value CRLF`, name one or
---    more tchar, value zero or more bytes in HTAB, 0x20-0x7E or 0x80-0xFF (so no other control byte, no
---    bare CR or LF); the value is returned without its trailing SP/HTAB. A line that starts with SP or
---    HTAB: `false, 400, "Obsolete line folding in header"`; any other line that does not match:
---    `false, 400, "Invalid header line"`; the (max_headers + 1)-th field: `false, 431, "Too many headers"`.
---
--- A native implementation must return exactly the same values for every input (the differential spec
--- checks it). It never raises for bad input; it raises only for wrong argument types.
---@class luvicorn.parsers.lua
local M = { name = "lua" }

local find, sub, byte, lower, match = string.find, string.sub, string.byte, string.lower, string.match

-- Character classes are written as ranges, most frequent first: Lua tests a class's items in order,
-- and these patterns are most of the parser's cost.
local CTL = "[%z\1-\8\11\12\14-\31\127]"
local REQUEST_LINE = "^([A-Za-z0-9%-!#-'*+.^_`|~]+) ([!-~\128-\255]+) HTTP/(%d)%.(%d)\r\n"
local REQUEST_LINE_ANY_VERSION = "^[A-Za-z0-9%-!#-'*+.^_`|~]+ [!-~\128-\255]+ HTTP/%d+%.%d+\r\n"
local HEADER_LINE = "^([a-zA-Z0-9%-!#-'*+.^_`|~]+):[ \t]*([\t -~\128-\255]*)\r\n"

-- Lower-casing the same few names on every request shows in profiles; a bounded cache avoids it.
local lower_cache, cached = {}, 0

local function too_large(buf, s, max_head)
  local r = find(buf, "\r\n", s, true)
  if not r or r + 1 > max_head then return false, 414, "Request line too long" end
  return false, 431, "Request head too large"
end

---Parses an HTTP/1.x request head; see the contract above.
---@param buf string
---@param max_head integer
---@param max_headers integer
---@return integer|false|nil consumed
---@return string|integer|nil method_or_status
---@return string|nil target_or_reason
---@return integer|nil http_minor
---@return table|nil headers
function M.parse_head(buf, max_head, max_headers)
  local s = 1
  while byte(buf, s) == 13 and byte(buf, s + 1) == 10 do s = s + 2 end
  local e = find(buf, "\r\n\r\n", s, true)
  if not e then
    if find(buf, CTL, s) then return false, 400, "Invalid character in request head" end
    if byte(buf, s) == 10 or find(buf, "[^\r]\n", s) then
      return false, 400, "Invalid line ending in request head"
    end
    if #buf > max_head then return too_large(buf, s, max_head) end
    return nil
  end
  if e + 3 > max_head then return too_large(buf, s, max_head) end
  local head = sub(buf, s, e + 1)
  local _, pos, method, target, major, minor = find(head, REQUEST_LINE)
  if not pos then
    if find(head, REQUEST_LINE_ANY_VERSION) then return false, 505, "Unsupported HTTP version" end
    return false, 400, "Invalid request line"
  end
  if major ~= "1" or (minor ~= "1" and minor ~= "0") then return false, 505, "Unsupported HTTP version" end
  local headers, n, last = {}, 0, #head
  pos = pos + 1
  while pos <= last do
    local _, he, name, value = find(head, HEADER_LINE, pos)
    if not he then
      local c = byte(head, pos)
      if c == 32 or c == 9 then return false, 400, "Obsolete line folding in header" end
      return false, 400, "Invalid header line"
    end
    local c = byte(value, -1)
    if c == 32 or c == 9 then value = match(value, "^(.-)[ \t]*$") end
    n = n + 1
    if n > max_headers then return false, 431, "Too many headers" end
    local lname = lower_cache[name]
    if not lname then
      lname = lower(name)
      if cached < 1024 then
        lower_cache[name] = lname
        cached = cached + 1
      end
    end
    headers[n] = { lname, value }
    pos = he + 1
  end
  return e + 3, method, target, minor == "1" and 1 or 0, headers
end

return M
