-- StaticFiles: serves files under a directory, refusing anything that would leave it.
--
-- Refused (404): a ".." or "." segment (scope.path is already percent-decoded, so "%2e%2e" arrives as ".."),
-- encoded slashes or backslashes in raw_path ("%2f", "%5c"), a backslash or NUL in the path, and any path
-- whose real path (symlinks resolved with the loop's uv.fs_realpath) lies outside the directory's real path.
-- Without uv.fs_realpath (luv has it; luvrs may not yet) symlinks cannot be resolved in pure Lua: StaticFiles
-- then refuses to serve unless follow_symlink = true or a `realpath` function is given explicitly.
local responses = require "lasgi.responses"
local routing = require "lasgi.routing"
local datastructures = require "lasgi.datastructures"
local loop = require "lasgi.loop"

local M = {}

local StaticFiles = { __name = "lasgi.StaticFiles" }
StaticFiles.__index = StaticFiles
M.StaticFiles = StaticFiles

---Creates the app. opts: directory (required), html (false: serve index.html for directories and
---404.html for misses), follow_symlink (false: a symlink may point anywhere inside the directory, never
---outside; true: symlinks are not checked), check_dir (true: the directory must exist now),
---realpath (function(path) -> resolved path or nil; default the loop's uv.fs_realpath).
---The loop module is looked up on the first request, when the server has loaded it.
---@param opts table
---@return table
function M.new(opts)
  if type(opts) ~= "table" or type(opts.directory) ~= "string" then
    error("StaticFiles: argument 'opts.directory' must be a string", 2)
  end
  if opts.realpath ~= nil and type(opts.realpath) ~= "function" then
    error("StaticFiles: argument 'opts.realpath' must be a function", 2)
  end
  local dir = opts.directory:gsub("/+$", "")
  if dir == "" then dir = "/" end
  if opts.check_dir ~= false then
    local f = io.open(dir, "r")
    if not f then error("StaticFiles: directory does not exist: " .. opts.directory, 2) end
    f:close()
  end
  return setmetatable({ directory = dir, html = opts.html == true, follow_symlink = opts.follow_symlink == true,
                        realpath = opts.realpath }, StaticFiles)
end

-- Resolves the directory once, on the first request (the server's loop module is loaded by then).
function StaticFiles:init()
  if self.ready then return end
  if not self.follow_symlink then
    if not self.realpath then
      local uv = loop.get()
      if not (uv and uv.fs_realpath) then
        error("StaticFiles: the loop module has no fs_realpath to resolve symlinks; pass follow_symlink = true "
          .. "(or a realpath function) to serve without that check", 0)
      end
      self.realpath = function(p) return (uv.fs_realpath(p)) end
    end
    self.root_real = self.realpath(self.directory)
    if not self.root_real then error("StaticFiles: directory does not exist: " .. self.directory, 0) end
  end
  self.ready = true
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
  if not self.follow_symlink then
    local real = self.realpath(full)
    local root = self.root_real
    if not real or not root then return nil end
    local prefix = root:sub(-1) == "/" and root or (root .. "/")
    if real ~= root and real:sub(1, #prefix) ~= prefix then return nil end
  end
  return full, st
end

local function not_found(self, scope, receive, send)
  if self.html then
    local p, st = self:lookup("404.html")
    if p and st.type == "file" then
      return responses.file(p, { status = 404, stat = st, conditional = false })(scope, receive, send)
    end
  end
  return routing.http_error(scope, receive, send, 404)
end

function StaticFiles:__call(scope, receive, send)
  if scope.type ~= "http" then error("StaticFiles: only http scopes are served", 0) end
  self:init()
  if scope.method ~= "GET" and scope.method ~= "HEAD" then
    return routing.http_error(scope, receive, send, 405, { { "allow", "GET, HEAD" } })
  end
  local segs = safe_segments(scope)
  if not segs then return not_found(self, scope, receive, send) end
  local rel = table.concat(segs, "/")
  local full, st = self:lookup(rel)
  if full and st.type == "directory" and self.html then
    local route_path = routing.route_path(scope)
    if route_path:sub(-1) ~= "/" and route_path ~= "" then
      local url = datastructures.url_from_scope(scope)
      url.path = url.path .. "/"
      return responses.redirect(tostring(url), 307)(scope, receive, send)
    end
    full, st = self:lookup(rel == "" and "index.html" or (rel .. "/index.html"))
  end
  if not full or st.type ~= "file" then return not_found(self, scope, receive, send) end
  return responses.file(full, { stat = st })(scope, receive, send)
end

return M
