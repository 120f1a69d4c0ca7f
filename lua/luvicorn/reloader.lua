--- The file watcher behind `luvicorn --reload`: polls the watched directories with a timer and reports
--- which files changed. It needs only uv.fs_scandir, uv.fs_scandir_next, uv.fs_stat and uv.new_timer,
--- so it runs on luvrs and on luv alike.
---
--- API
---   local reloader = require "luvicorn.reloader"
---   local r = reloader.new(uv, opts)    -- raises "luvicorn.reloader.new: ..." on bad arguments
---     opts.dirs        list of directories to watch, default { "." }
---     opts.include     globs of files to watch, added to the default "*.lua"
---     opts.exclude     globs of files and directories to ignore, added to the defaults ".*", "*~", "*.swp"
---     opts.delay       seconds between two scans, default 0.25
---     opts.log         logger with a :warning(msg) method, optional
---     opts.max_entries bound on the directory entries one scan examines, default 20000
---   r:scan()           -> sorted list of the paths changed since the previous scan (created, modified or
---                         deleted); the first scan records the baseline and returns {}
---   r:start(on_change) -- records the baseline now, then scans every `delay` seconds on a timer and
---                         calls on_change(paths) when a scan finds changes
---   r:stop()           -- closes the timer (start may be called again)
---   reloader.glob(pattern) -> compiled glob: g:match(relative_path) -> boolean, g.pattern (Lua pattern)
---
--- Which files are watched (as Uvicorn's --reload-include/--reload-exclude)
---   * A file is watched when an include matches it and no exclude does. A default is dropped when the
---     user lists the same pattern on the other side (exclude = { "*.lua" } unwatches Lua files;
---     include = { ".*" } stops ignoring hidden files).
---   * An include without wildcards (".env", "conf/app.toml") names files exactly and wins over the
---     excludes that match the file (an excluded directory is still not descended).
---   * A pattern without "/" matches the entry's name. A pattern with "/" matches the path relative to the
---     watched directory, whole ("templates/*.html" does not match "x/templates/a.html").
---   * Excludes apply to directories too: an excluded directory is not descended (".*" skips .git).
---     A pattern ending in "/" matches directories only ("build/").
---   * "*" is any run of characters but "/", "?" one character but "/", "[abc]", "[a-z]", "[!abc]"
---     (or "[^abc]") one character of (or not of) the set, "**/" any number of directories (none
---     included), a final "/**" everything below, "\" makes the next character literal.
---   * A file counts as modified when its mtime (seconds and nanoseconds), size or inode changes.
---   * Symbolic links are followed; a directory reached twice (a link loop) is walked once.
---   * A scan examines at most max_entries entries (breadth first, in name order), then warns once.
---@class luvicorn.reloader
local M = {}

local Reloader = {}
Reloader.__index = Reloader
Reloader.__name = "luvicorn.Reloader"

local DEFAULT_INCLUDE = { "*.lua" }
local DEFAULT_EXCLUDE = { ".*", "*~", "*.swp" }
local OPTIONS = { dirs = true, include = true, exclude = true, delay = true, log = true, max_entries = true }

local Glob = {}
Glob.__index = Glob
Glob.__name = "luvicorn.reloader.Glob"

-- Lua pattern text for one literal character.
local function lit(c)
  if c:find("^[%w/]$") then return c end
  return "%" .. c
end

-- Compiles the bracket expression starting at position i ("[") of `glob`; returns the Lua set and
-- the position after "]", or nil when it is not closed.
local function compile_set(glob, i)
  local j = i + 1
  local negate = false
  local c = glob:sub(j, j)
  if c == "!" or c == "^" then
    negate = true
    j = j + 1
  end
  local members = {}
  local first = true
  while j <= #glob do
    c = glob:sub(j, j)
    if c == "]" and not first then
      local body = table.concat(members)
      -- A negated set must not cross a directory boundary either.
      return negate and ("[^/" .. body .. "]") or ("[" .. body .. "]"), j + 1
    end
    if c == "\\" and j < #glob then
      j = j + 1
      members[#members + 1] = lit(glob:sub(j, j))
    elseif c == "-" and not first and glob:sub(j + 1, j + 1) ~= "]" and j < #glob then
      members[#members + 1] = "-"
    else
      members[#members + 1] = c:find("^%w$") and c or "%" .. c
    end
    first = false
    j = j + 1
  end
  return nil
end

---Compiles a glob. Raises (naming `who`) when it is malformed.
---@param pattern string
---@param who? string the function and argument to name in errors
---@return table glob { pattern = Lua pattern, on_path = boolean, dir_only = boolean, literal = boolean }
function M.glob(pattern, who)
  who = who or "luvicorn.reloader.glob: argument 'pattern'"
  if type(pattern) ~= "string" or pattern == "" then
    error(("%s must be a non-empty string, got %s"):format(who, pattern == "" and '""' or type(pattern)), 3)
  end
  local glob = pattern
  local dir_only = false
  if #glob > 1 and glob:sub(-1) == "/" then
    dir_only = true
    glob = glob:sub(1, -2)
  end
  glob = glob:gsub("^%./", "")
  if glob:sub(1, 1) == "/" then
    error(("%s: glob %q must be relative to the watched directory"):format(who, pattern), 3)
  end
  local on_path = glob:find("/", 1, true) ~= nil
  local out = {}
  local literal = true
  local i = 1
  while i <= #glob do
    local c = glob:sub(i, i)
    if c == "\\" and i < #glob then
      out[#out + 1] = lit(glob:sub(i + 1, i + 1))
      i = i + 2
    elseif c == "*" then
      literal = false
      if glob:sub(i + 1, i + 1) == "*" then
        local at_segment_start = i == 1 or glob:sub(i - 1, i - 1) == "/"
        if at_segment_start and glob:sub(i + 2, i + 2) == "/" then
          -- "**/": nothing, or whole directories. The subject starts with "/" and paths have no "//",
          -- so ".*" followed by "the previous character is /" is exactly that.
          out[#out + 1] = ".*%f[^/]"
          i = i + 3
        else
          out[#out + 1] = ".*"
          i = i + 2
        end
      else
        out[#out + 1] = "[^/]*"
        i = i + 1
      end
    elseif c == "?" then
      literal = false
      out[#out + 1] = "[^/]"
      i = i + 1
    elseif c == "[" then
      literal = false
      local set, after = compile_set(glob, i)
      if not set then error(("%s: glob %q has an unclosed ["):format(who, pattern), 3) end
      out[#out + 1] = set
      i = after
    else
      out[#out + 1] = lit(c)
      i = i + 1
    end
  end
  local body = table.concat(out)
  return setmetatable({
    glob = pattern,
    pattern = on_path and ("^/" .. body .. "$") or ("^" .. body .. "$"),
    on_path = on_path,
    dir_only = dir_only,
    literal = literal,
  }, Glob)
end

-- Glob:match with both subjects at hand (the walk has them): `slashed` is "/" .. rel and `name` its last
-- component.
local function hit(g, name, slashed, is_dir)
  if g.dir_only and not is_dir then return false end
  return (g.on_path and slashed or name):find(g.pattern) ~= nil
end

---True when the glob matches the entry at `rel` (relative to the watched directory, "a/b.lua").
---@param rel string
---@param is_dir? boolean
---@return boolean
function Glob:match(rel, is_dir)
  return hit(self, rel:match("[^/]*$"), "/" .. rel, is_dir)
end

local function check_list(v, name)
  if v == nil then return {} end
  if type(v) ~= "table" then
    error(("luvicorn.reloader.new: argument 'opts.%s' must be a list of strings, got %s"):format(name, type(v)), 3)
  end
  for i, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then
      error(("luvicorn.reloader.new: argument 'opts.%s' must be a list of non-empty strings, item %d is %s")
        :format(name, i, s == "" and '""' or type(s)), 3)
    end
  end
  return v
end

-- The user's patterns plus the defaults the other list does not name (Uvicorn's rule).
local function merge(defaults, user, other)
  local named, seen, out = {}, {}, {}
  for _, p in ipairs(other) do named[p] = true end
  local function add(p)
    if not seen[p] then
      seen[p] = true
      out[#out + 1] = p
    end
  end
  for _, p in ipairs(defaults) do
    if not named[p] then add(p) end
  end
  for _, p in ipairs(user) do add(p) end
  return out
end

local function compile_all(patterns, name)
  local out = {}
  for i, p in ipairs(patterns) do
    out[i] = M.glob(p, ("luvicorn.reloader.new: argument 'opts.%s'"):format(name))
  end
  return out
end

---Creates a watcher; see the module header for `opts`.
---@param uv table luvrs or luv
---@param opts? table
---@return table reloader
function M.new(uv, opts)
  if type(uv) ~= "table" then
    error("luvicorn.reloader.new: argument 'uv' must be the loop module (luvrs or luv), got " .. type(uv), 2)
  end
  for _, f in ipairs({ "fs_scandir", "fs_scandir_next", "fs_stat", "new_timer" }) do
    if uv[f] == nil then
      error(("luvicorn.reloader.new: argument 'uv' lacks %s (luvrs or luv expected)"):format(f), 2)
    end
  end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("luvicorn.reloader.new: argument 'opts' must be a table, got " .. type(opts), 2)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("luvicorn.reloader.new: unknown option %q"):format(tostring(k)), 2) end
  end
  local dirs = check_list(opts.dirs, "dirs")
  if opts.dirs ~= nil and #dirs == 0 then
    error("luvicorn.reloader.new: argument 'opts.dirs' must name at least one directory", 2)
  end
  if #dirs == 0 then dirs = { "." } end
  local user_include = check_list(opts.include, "include")
  local user_exclude = check_list(opts.exclude, "exclude")
  local delay = opts.delay
  if delay == nil then delay = 0.25 end
  if type(delay) ~= "number" or not (delay > 0 and delay < math.huge) then
    error("luvicorn.reloader.new: argument 'opts.delay' must be a positive number of seconds, got "
      .. tostring(delay), 2)
  end
  local log = opts.log
  if log ~= nil and not (type(log) == "table" or type(log) == "userdata") then
    error("luvicorn.reloader.new: argument 'opts.log' must be a logger, got " .. type(log), 2)
  end
  if log ~= nil and type(log.warning) ~= "function" then
    error("luvicorn.reloader.new: argument 'opts.log' must be a logger with a warning method", 2)
  end
  local max_entries = opts.max_entries
  if max_entries == nil then max_entries = 20000 end
  if math.type(max_entries) ~= "integer" or max_entries < 1 then
    error("luvicorn.reloader.new: argument 'opts.max_entries' must be a positive integer, got "
      .. tostring(max_entries), 2)
  end

  local roots = {}
  for i, d in ipairs(dirs) do
    -- "dir/" and "dir" report the same paths; "/" stays the root.
    roots[i] = d:match("^(.-)/*$")
    if roots[i] == "" then roots[i] = "/" end
  end
  local include = compile_all(merge(DEFAULT_INCLUDE, user_include, user_exclude), "include")
  local exclude = compile_all(merge(DEFAULT_EXCLUDE, user_exclude, user_include), "exclude")
  return setmetatable({
    uv = uv, roots = roots, include = include, exclude = exclude, delay = delay, log = log,
    max_entries = max_entries, snapshot = nil, warned = {},
  }, Reloader)
end

local function excluded(self, name, slashed, is_dir)
  for _, g in ipairs(self.exclude) do
    if hit(g, name, slashed, is_dir) then return true end
  end
  return false
end

-- Whether a file is watched; see the module header for the rules.
local function watched(self, name, slashed)
  local matched = false
  for _, g in ipairs(self.include) do
    if hit(g, name, slashed, false) then
      if g.literal then return true end
      matched = true
    end
  end
  return matched and not excluded(self, name, slashed, false)
end

function Reloader:warn_once(key, msg)
  if self.warned[key] then return end
  self.warned[key] = true
  if self.log then self.log:warning(msg) end
end

local function join(root, slashed)
  if root == "." then return slashed:sub(2) end
  if root == "/" then return slashed end
  return root .. slashed
end

-- Walks every root breadth first and returns { [path] = "mtime.sec:mtime.nsec:size:ino" }.
function Reloader:walk()
  local uv = self.uv
  local files, visited = {}, {}
  local budget, truncated = self.max_entries, false
  for _, root in ipairs(self.roots) do
    if truncated then break end
    local st = uv.fs_stat(root)
    if not st or st.type ~= "directory" then
      self:warn_once("root:" .. root, ("Cannot watch %s for changes: %s"):format(root,
        st and "not a directory" or "no such directory"))
    else
      self.warned["root:" .. root] = nil
      visited[st.dev .. ":" .. st.ino] = true
      local queue, head = { "" }, 1
      while queue[head] and not truncated do
        local dir = queue[head]
        head = head + 1
        local req = uv.fs_scandir(dir == "" and root or join(root, dir))
        while req do
          local name, kind = uv.fs_scandir_next(req)
          if not name then break end
          if budget == 0 then
            truncated = true
            break
          end
          budget = budget - 1
          local slashed = dir .. "/" .. name
          local path = join(root, slashed)
          local est
          if kind ~= "file" and kind ~= "directory" then
            est = uv.fs_stat(path) -- a link (followed) or an entry the file system did not type
            kind = est and est.type
          end
          if kind == "directory" then
            if not excluded(self, name, slashed, true) then
              est = est or uv.fs_stat(path)
              local id = est and (est.dev .. ":" .. est.ino)
              if id and not visited[id] then
                visited[id] = true
                queue[#queue + 1] = slashed
              end
            end
          elseif kind == "file" and watched(self, name, slashed) then
            est = est or uv.fs_stat(path)
            if est then
              files[path] = est.mtime.sec .. ":" .. est.mtime.nsec .. ":" .. est.size .. ":" .. est.ino
            end
          end
        end
      end
    end
  end
  if truncated then
    self:warn_once("limit", ("More than %d files and directories to watch; changes past them go unnoticed "
      .. "(narrow --reload-dir or add --reload-exclude)"):format(self.max_entries))
  end
  return files
end

---Scans the watched files; returns the paths changed since the previous scan, sorted. The first scan
---records the baseline and returns {}.
---@return string[]
function Reloader:scan()
  local now = self:walk()
  local before = self.snapshot
  self.snapshot = now
  local changed = {}
  if not before then return changed end
  for path, sig in pairs(now) do
    if before[path] ~= sig then changed[#changed + 1] = path end
  end
  for path in pairs(before) do
    if not now[path] then changed[#changed + 1] = path end
  end
  table.sort(changed)
  return changed
end

---Records the baseline (unless a scan already did), then scans every `delay` seconds and calls
---`on_change(paths)` when something changed.
---@param on_change fun(paths: string[])
function Reloader:start(on_change)
  if type(on_change) ~= "function" then
    error("luvicorn.Reloader:start: argument 'on_change' must be a function, got " .. type(on_change), 2)
  end
  if self.timer then error("luvicorn.Reloader:start: already started", 2) end
  if not self.snapshot then self:scan() end
  local ms = math.max(1, math.floor(self.delay * 1000 + 0.5))
  self.timer = self.uv.new_timer()
  self.timer:start(ms, ms, function()
    local changed = self:scan()
    if #changed > 0 then on_change(changed) end
  end)
end

---Stops watching and closes the timer; harmless when not started.
function Reloader:stop()
  local t = self.timer
  if not t then return end
  self.timer = nil
  if not t:is_closing() then t:close() end
end

return M
