-- In-memory notes, with change listeners (the live-update WebSocket subscribes to them).
local M = {}

local Store = { __name = "notes.Store" }
Store.__index = Store

---@return table
function M.new()
  return setmetatable({ notes = {}, order = {}, next_id = 1, listeners = {} }, Store)
end

local function trim(s) return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", "")) end

---Validates and adds a note; returns it, or nil and a message.
function Store:add(title, body)
  title, body = trim(title), trim(body)
  if title == "" then return nil, "title is required" end
  if #title > 200 then return nil, "title is longer than 200 characters" end
  if #body > 10000 then return nil, "body is longer than 10000 characters" end
  local note = { id = self.next_id, title = title, body = body, created = os.time() }
  self.next_id = self.next_id + 1
  self.notes[note.id] = note
  self.order[#self.order + 1] = note.id
  self:emit({ event = "created", note = note })
  return note
end

function Store:get(id) return self.notes[id] end

---Notes, newest first.
function Store:list()
  local out = {}
  for i = #self.order, 1, -1 do out[#out + 1] = self.notes[self.order[i]] end
  return out
end

function Store:delete(id)
  if not self.notes[id] then return false end
  self.notes[id] = nil
  for i, v in ipairs(self.order) do
    if v == id then table.remove(self.order, i); break end
  end
  self:emit({ event = "deleted", id = id })
  return true
end

function Store:count() return #self.order end

---Registers fn(event); returns a function that unregisters it.
function Store:subscribe(fn)
  self.listeners[fn] = true
  return function() self.listeners[fn] = nil end
end

function Store:emit(event)
  local fns = {}
  for fn in pairs(self.listeners) do fns[#fns + 1] = fn end
  for _, fn in ipairs(fns) do fn(event) end
end

return M
