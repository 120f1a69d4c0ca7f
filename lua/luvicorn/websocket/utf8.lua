-- Incremental UTF-8 validation for text messages that arrive in fragments.
--
-- Whole sequences are checked by Lua 5.4's utf8.len, which in its default strict mode already rejects
-- overlong forms, surrogates and code points past U+10FFFF, and runs in C. Only a sequence cut by a
-- fragment boundary is held back; its prefix is checked at once so that bad bytes fail as soon as they
-- arrive instead of at the end of the message.
local M = {}

local byte, sub = string.byte, string.sub
local ulen = utf8.len

-- Allowed range of the second byte for each lead byte (Unicode table 3-7); later bytes are 80..BF.
local function second_range(lead)
  if lead == 0xE0 then return 0xA0, 0xBF end
  if lead == 0xED then return 0x80, 0x9F end
  if lead == 0xF0 then return 0x90, 0xBF end
  if lead == 0xF4 then return 0x80, 0x8F end
  return 0x80, 0xBF
end

-- Sequence length for a lead byte; nil when the byte cannot start a sequence.
local function seq_len(b)
  if b < 0x80 then return 1 end
  if b >= 0xC2 and b <= 0xDF then return 2 end
  if b >= 0xE0 and b <= 0xEF then return 3 end
  if b >= 0xF0 and b <= 0xF4 then return 4 end
  return nil
end

-- True when `s` (shorter than a full sequence) can still be the start of a valid sequence.
local function valid_prefix(s)
  local lead = byte(s, 1)
  if not seq_len(lead) then return false end
  for i = 2, #s do
    local b = byte(s, i)
    local lo, hi = 0x80, 0xBF
    if i == 2 then lo, hi = second_range(lead) end
    if b < lo or b > hi then return false end
  end
  return true
end

---@class luvicorn.websocket.Utf8Validator
---@field carry string bytes of a sequence cut by the last chunk boundary
local Validator = { __name = "luvicorn.websocket.Utf8Validator" }
Validator.__index = Validator

---Creates a validator for one message.
---@return luvicorn.websocket.Utf8Validator
function M.new()
  return setmetatable({ carry = "" }, Validator)
end

---Checks the next chunk of the message.
---@param chunk string
---@return boolean ok false as soon as the bytes so far cannot be valid UTF-8
function Validator:feed(chunk)
  if type(chunk) ~= "string" then error("Utf8Validator:feed: chunk must be a string", 2) end
  local s = chunk
  if #self.carry > 0 then s = self.carry .. chunk end
  local n = #s
  -- Find where a sequence cut by the end of the chunk starts: at most 3 bytes back.
  local cut = n + 1
  for i = n, math.max(1, n - 2), -1 do
    local b = byte(s, i)
    if b < 0x80 then break end
    if b >= 0xC0 then
      local want = seq_len(b)
      if want and i + want - 1 > n then cut = i end
      break
    end
  end
  if cut <= n then
    self.carry = sub(s, cut)
    if not valid_prefix(self.carry) then return false end
    if cut == 1 then return true end
    return ulen(s, 1, cut - 1) ~= nil
  end
  self.carry = ""
  return ulen(s) ~= nil
end

---Ends the message: false when it stopped in the middle of a sequence.
---@return boolean
function Validator:finish()
  local ok = self.carry == ""
  self.carry = ""
  return ok
end

---Checks a complete string.
---@param s string
---@return boolean
function M.valid(s)
  return ulen(s) ~= nil
end

return M
