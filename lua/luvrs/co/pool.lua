-- luvrs.co.pool: keep-alive pools of idle luvrs.co sockets, keyed by "host:port" or "unix:/path".
--
-- An idle socket keeps reading, so a peer that closes it (or sends anything) gets it dropped from the
-- pool at once instead of failing the next request; it does not keep the loop alive while idle.
local co = require("luvrs.co")

local pool = {}

---@class luvrs.co.Pool
---@field size integer idle sockets kept per key
---@field idle_timeout integer ms an idle socket is kept (0: no limit)
local Pool = {}
Pool.__index = Pool
Pool.__name = "luvrs.co.pool"

local argerr = co._argerr

local function is_pool(v) return getmetatable(v) == Pool end

local function check_self(fname, self)
  if not is_pool(self) then argerr(fname, "self", "a pool (use pool:method())", self) end
end

---Creates a pool.
---@param opts? {size: integer?, idle_timeout: integer?} size (default 16) is per key; idle_timeout in ms
---(default 4000, under common server keep-alive timeouts; 0 keeps idle sockets until the peer closes them)
---@return luvrs.co.Pool
function pool.new(opts)
  local fname = "luvrs.co.pool.new"
  if opts ~= nil and type(opts) ~= "table" then argerr(fname, "opts", "a table or nil", opts) end
  opts = opts or {}
  local size = opts.size or 16
  if math.type(size) ~= "integer" or size < 0 then argerr(fname, "opts.size", "a non-negative integer", size) end
  local idle = opts.idle_timeout or 4000
  if math.type(idle) == nil or idle < 0 then argerr(fname, "opts.idle_timeout", "a non-negative number", idle) end
  return setmetatable({ size = size, idle_timeout = idle, idle = {}, hits = 0, misses = 0 }, Pool)
end

---The pool key of a TCP destination, as luvrs.co.tcp_connect gives it to its sockets.
---@param host string
---@param port integer
---@return string
pool.tcp_key = co._tcp_key

---The pool key of a Unix socket path.
---@param path string
---@return string
pool.unix_key = co._unix_key

---Takes an idle socket for `key` (the most recently used one), or returns nil when none is usable.
---@param key string
---@return luvrs.co.Socket|nil
function Pool:get(key)
  check_self("luvrs.co pool:get", self)
  if type(key) ~= "string" then argerr("luvrs.co pool:get", "key", "a string", key) end
  local list = self.idle[key]
  while list and #list > 0 do
    local s = table.remove(list)
    s.pool = nil
    if s:reusable() then
      s:_unidle()
      self.hits = self.hits + 1
      return s
    end
    s:close()
  end
  self.misses = self.misses + 1
  return nil
end

---Gives `sock` to the pool under `key`. A socket that is not reusable (closed, EOF or error seen,
---unread bytes, writes pending) is closed instead; when `key` already has `size` idle sockets the
---oldest one is closed. Returns true, or nil, err when the socket was closed instead of kept.
---@param key string
---@param sock luvrs.co.Socket
---@return true|nil, string?
function Pool:put(key, sock)
  local fname = "luvrs.co pool:put"
  check_self(fname, self)
  if type(key) ~= "string" then argerr(fname, "key", "a string", key) end
  if getmetatable(sock) ~= co.Socket then argerr(fname, "sock", "a luvrs.co socket", sock) end
  if sock.closed then return nil, "closed" end
  if sock.pool then return nil, "already pooled" end
  if not sock:reusable() or sock.inflight > 0 or self.size == 0 then
    sock:close()
    return nil, "not reusable"
  end
  local list = self.idle[key]
  if not list then
    list = {}
    self.idle[key] = list
  end
  while #list >= self.size do
    local old = table.remove(list, 1)
    old.pool = nil
    old:close()
  end
  list[#list + 1] = sock
  sock.pool = self
  sock.pool_key = key
  sock:_idle(self.idle_timeout, function(s)
    -- Anything while idle (data, EOF, error) or the idle timeout ends the socket: close() forgets it.
    s:close()
  end)
  return true
end

-- Called by sock:close() for a pooled socket.
function Pool:_forget(sock)
  local list = self.idle[sock.pool_key]
  sock.pool = nil
  if not list then return end
  for i = #list, 1, -1 do
    if list[i] == sock then table.remove(list, i) end
  end
  if #list == 0 then self.idle[sock.pool_key] = nil end
end

---Idle sockets held for `key`, or in total when `key` is nil.
---@param key? string
---@return integer
function Pool:count(key)
  check_self("luvrs.co pool:count", self)
  if key ~= nil then return self.idle[key] and #self.idle[key] or 0 end
  local n = 0
  for _, list in pairs(self.idle) do n = n + #list end
  return n
end

---Closes every idle socket.
function Pool:close()
  check_self("luvrs.co pool:close", self)
  local all = {}
  for _, list in pairs(self.idle) do
    for _, s in ipairs(list) do all[#all + 1] = s end
  end
  for _, s in ipairs(all) do s:close() end
  self.idle = {}
end

-- An idle socket for `key`, or connect(...): sock, reused, or nil, err.
local function get_or_connect(self, key, connect, ...)
  local s = self:get(key)
  if s then return s, true end
  local err
  s, err = connect(...)
  if not s then return nil, err end
  return s, false
end

---An idle socket for host:port from the pool, or a new connection. Returns sock, reused (boolean),
---or nil, err.
---@param host string
---@param port integer
---@param opts? table as for luvrs.co.tcp_connect
function Pool:tcp_connect(host, port, opts)
  check_self("luvrs.co pool:tcp_connect", self)
  if type(host) ~= "string" then argerr("luvrs.co pool:tcp_connect", "host", "a string", host) end
  return get_or_connect(self, pool.tcp_key(host, port), co.tcp_connect, host, port, opts)
end

---An idle socket for the Unix socket `path` from the pool, or a new connection. Returns sock, reused,
---or nil, err.
---@param path string
---@param opts? table as for luvrs.co.unix_connect
function Pool:unix_connect(path, opts)
  check_self("luvrs.co pool:unix_connect", self)
  if type(path) ~= "string" then argerr("luvrs.co pool:unix_connect", "path", "a string", path) end
  return get_or_connect(self, pool.unix_key(path), co.unix_connect, path, opts)
end

pool.Pool = Pool
---The pool used by sock:setkeepalive() and luvrs.co.http when none is given.
pool.default = pool.new()

return pool
