-- StaticFiles: serves files under a directory, refusing anything that would leave it.
--
-- Refused (404): a ".." or "." segment (scope.path is already percent-decoded, so "%2e%2e" arrives as ".."),
-- encoded slashes or backslashes in raw_path ("%2f", "%5c"), a backslash or NUL in the path, and any path
-- whose real path (symlinks resolved with the loop's uv.fs_realpath) lies outside the directory's real path.
-- Without uv.fs_realpath symlinks cannot be resolved: StaticFiles then refuses to start unless
-- follow_symlink = true is given explicitly.
local responses = require "lasgi.responses"
local routing = require "lasgi.routing"
local exceptions = require "lasgi.exceptions"
local loop = require "lasgi.loop"

local M = {}

local StaticFiles = { __name = "lasgi.StaticFiles" }
StaticFiles.__index = StaticFiles
M.StaticFiles = StaticFiles

local function realpath(path)
  local uv = loop.get()
  return uv.fs_realpath(path)
end

---Creates the app. opts: directory (required), html (false: serve index.html for directories and
---404.html for misses), follow_symlink (false: a symlink may point anywhere inside the directory, never
---outside; true: symlinks are not checked), check_dir (true: the directory must exist now).
---@param opts table
---@return table
function M.new(opts)
  if type(opts) ~= "table" or type(opts.directory) ~= "string" then
    error("StaticFiles: argument 'opts.directory' must be a string", 2)
  end
  local uv = loop.get()
  local can_resolve = uv ~= nil and uv.fs_realpath ~= nil
  if not can_resolve and not opts.follow_symlink then
    error("StaticFiles: no loop module with fs_realpath to resolve symlinks; pass follow_symlink = true "
      .. "to serve without that check", 2)
  end
  local self = setmetatable({ directory = opts.directory:gsub("/+$", ""), html = opts.html == true,
                              follow_symlink = opts.follow_symlink == true, can_resolve = can_resolve }, StaticFiles)
  if self.directory == "" then self.directory = "/" end
  if can_resolve then
    local real = realpath(self.directory)
    if not real and opts.check_dir ~= false then
      error("StaticFiles: directory does not exist: " .. opts.directory, 2)
    end
    self.root_real = real
  end
  return self
end

-- Returns the list of path segments, or nil when the path tries to leave the directory.
local function safe_segments(scope)
  local path = routing.route_path(scope)
  local raw = scope.raw_path or ""
  local lraw = raw:lower()
  if lraw:find("%2f", 1, true) or lraw:find("%5c", 1, true) or lraw:find("%00", 1, true) then return nil end
  if path:find("[\\%z]") then return nil end
  local segs = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." or seg == "." then return nil end
    segs[#segs + 1] = seg
  end
  return segs
end
M._safe_segments = safe_segments

-- Returns the file path and its stat if it is a file inside the directory, else nil.
function StaticFiles:lookup(rel)
  local full = self.directory .. (rel ~= "" and ("/" .. rel) or "")
  local st = responses.stat(full)
  if not st then return nil end
  if not self.follow_symlink and self.can_resolve then
    local real = realpath(full)
    local root = self.root_real
    if not real or not root then return nil end
    local prefix = root:sub(-1) == "/" and root or (root .. "/")
    if real ~= root and real:sub(1, #prefix) ~= prefix then return nil end
  end
  return full, st
end

local function respond(scope, receive, send, resp)
  return resp(scope, receive, send)
end

local function not_found(self, scope, receive, send)
  if self.html then
    local p, st = self:lookup("404.html")
    if p and st.type == "file" then
      return respond(scope, receive, send, responses.file(p, { status = 404, stat = st, conditional = false }))
    end
  end
  if scope.app then error(exceptions.http(404), 0) end
  return respond(scope, receive, send, responses.text("Not Found", 404))
end

function StaticFiles:__call(scope, receive, send)
  if scope.type ~= "http" then error("StaticFiles: only http scopes are served", 0) end
  if scope.method ~= "GET" and scope.method ~= "HEAD" then
    if scope.app then error(exceptions.http(405, nil, { { "allow", "GET, HEAD" } }), 0) end
    return respond(scope, receive, send, responses.text("Method Not Allowed", 405, { { "allow", "GET, HEAD" } }))
  end
  local segs = safe_segments(scope)
  if not segs then return not_found(self, scope, receive, send) end
  local rel = table.concat(segs, "/")
  local full, st = self:lookup(rel)
  if full and st.type == "directory" and self.html then
    local route_path = routing.route_path(scope)
    if route_path:sub(-1) ~= "/" and route_path ~= "" then
      local url = require("lasgi.datastructures").url_from_scope(scope)
      url.path = url.path .. "/"
      return respond(scope, receive, send, responses.redirect(tostring(url), 307))
    end
    full, st = self:lookup(rel == "" and "index.html" or (rel .. "/index.html"))
  end
  if not full or st.type ~= "file" then return not_found(self, scope, receive, send) end
  return respond(scope, receive, send, responses.file(full, { stat = st }))
end

return M
