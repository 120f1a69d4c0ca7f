--- LASGI lifespan: runs the app once with a "lifespan" scope, feeds it startup and shutdown, and
--- reports their outcome. The app's coroutine handles its own completion (any party may resume it).
---@class luvicorn.lifespan
local M = {}

local Lifespan = {}
Lifespan.__index = Lifespan
Lifespan.__name = "luvicorn.Lifespan"

local LASGI = { version = "1.0", spec_version = "1.0" }

---@param app any LASGI app
---@param mode string "auto"|"on"|"off"
---@param log table logger
---@return table lifespan
function M.new(app, mode, log)
  if mode ~= "auto" and mode ~= "on" and mode ~= "off" then
    error("luvicorn.lifespan.new: argument 'mode' must be auto, on or off, got " .. tostring(mode), 2)
  end
  if type(log) ~= "table" then error("luvicorn.lifespan.new: argument 'log' must be a logger", 2) end
  return setmetatable({
    app = app, mode = mode, log = log,
    state = {},
    phase = "idle", -- idle | startup | started | shutdown | done
    unsupported = false,
    waiting = false,
  }, Lifespan)
end

local function finish(self, which, ok, message)
  local cb = self[which .. "_cb"]
  if cb then
    self[which .. "_cb"] = nil
    cb(ok, message)
  end
end

function Lifespan:receive()
  while true do
    if self.phase == "startup" and not self.startup_sent then
      self.startup_sent = true
      return { type = "lifespan.startup" }
    elseif self.phase == "shutdown" and not self.shutdown_sent then
      self.shutdown_sent = true
      return { type = "lifespan.shutdown" }
    end
    self.waiting = true
    coroutine.yield()
    self.waiting = false
  end
end

function Lifespan:send(event)
  if type(event) ~= "table" then error("send: event must be a table", 2) end
  local t = event.type
  if t == "lifespan.startup.complete" or t == "lifespan.startup.failed" then
    if self.phase ~= "startup" or self.startup_done then error("send: " .. t .. " out of order", 2) end
    self.startup_done = true
    self.phase = "started"
    if t == "lifespan.startup.complete" then
      finish(self, "startup", true)
    else
      finish(self, "startup", false, event.message or "")
    end
  elseif t == "lifespan.shutdown.complete" or t == "lifespan.shutdown.failed" then
    if self.phase ~= "shutdown" or self.shutdown_done then error("send: " .. t .. " out of order", 2) end
    self.shutdown_done = true
    if t == "lifespan.shutdown.complete" then
      finish(self, "shutdown", true)
    else
      finish(self, "shutdown", false, event.message or "")
    end
  else
    error("send: unknown lifespan event type " .. tostring(t), 2)
  end
  return true
end

local function app_done(self, ok, err)
  self.app_finished = true
  if not ok then
    if not self.startup_done and self.mode == "auto" then
      self.unsupported = true
      self.log:info("LASGI 'lifespan' protocol appears unsupported.")
      self.startup_done = true
      finish(self, "startup", true)
      return
    end
    self.log:error("Exception in 'lifespan' protocol\n" .. tostring(err))
    if not self.startup_done then
      self.startup_done = true
      finish(self, "startup", false, tostring(err))
    elseif not self.shutdown_done then
      self.shutdown_done = true
      finish(self, "shutdown", false, tostring(err))
    end
    return
  end
  -- returned without answering: treat the phase as done
  if not self.startup_done then
    self.startup_done = true
    finish(self, "startup", true)
  elseif self.phase == "shutdown" and not self.shutdown_done then
    self.shutdown_done = true
    finish(self, "shutdown", true)
  end
end

---Starts the app with the lifespan scope and sends startup; `cb(ok, message)` once it is answered.
---With mode "off", `cb(true)` at once.
---@param cb fun(ok: boolean, message?: string)
function Lifespan:startup(cb)
  if type(cb) ~= "function" then error("Lifespan:startup: argument 'cb' must be a function", 2) end
  if self.mode == "off" then
    self.unsupported = true
    return cb(true)
  end
  self.startup_cb = cb
  self.phase = "startup"
  local scope = { type = "lifespan", lasgi = LASGI, state = self.state }
  local receive = function() return self:receive() end
  local send = function(event) return self:send(event) end
  self.co = coroutine.create(function()
    local ok, err = xpcall(self.app, debug.traceback, scope, receive, send)
    app_done(self, ok, err)
  end)
  local ok, err = coroutine.resume(self.co)
  if not ok then app_done(self, false, err) end
end

---Sends shutdown; `cb(ok, message)` once it is answered (at once when lifespan is off/unsupported).
---@param cb fun(ok: boolean, message?: string)
function Lifespan:shutdown(cb)
  if type(cb) ~= "function" then error("Lifespan:shutdown: argument 'cb' must be a function", 2) end
  if self.unsupported or self.app_finished or not self.co then return cb(true) end
  self.shutdown_cb = cb
  self.phase = "shutdown"
  if self.waiting then
    local ok, err = coroutine.resume(self.co)
    if not ok then app_done(self, false, err) end
  end
end

return M
