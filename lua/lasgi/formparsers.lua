-- Form bodies: application/x-www-form-urlencoded and multipart/form-data (streamed: file parts move to a
-- temporary file once they pass a size threshold, so large uploads never sit whole in memory).
local datastructures = require "lasgi.datastructures"
local exceptions = require "lasgi.exceptions"

local M = {}

---Splits a header value such as `multipart/form-data; boundary="x"` into its lower-cased main value and
---a map of parameters (names lower-cased, quoted values unquoted).
---@param value string|nil
---@return string main, table<string,string> params
function M.parse_options_header(value)
  if not value then return "", {} end
  local params = {}
  local main = value:match("^([^;]*)") or ""
  main = main:gsub("^%s+", ""):gsub("%s+$", ""):lower()
  local rest = value:sub(#(value:match("^[^;]*")) + 1)
  local i = 1
  while i <= #rest do
    local name, after = rest:match("^;%s*([^=;%s]+)%s*=%s*()", i)
    if not name then
      local skip = rest:find(";", i + 1, true)
      if not skip then break end
      i = skip
    else
      local v
      if rest:sub(after, after) == '"' then
        local j, buf = after + 1, {}
        while j <= #rest do
          local c = rest:sub(j, j)
          if c == "\\" and j < #rest then
            buf[#buf + 1] = rest:sub(j + 1, j + 1)
            j = j + 2
          elseif c == '"' then
            j = j + 1
            break
          else
            buf[#buf + 1] = c
            j = j + 1
          end
        end
        v = table.concat(buf)
        i = rest:find(";", j, true) or (#rest + 1)
      else
        local stop = rest:find(";", after, true) or (#rest + 1)
        v = rest:sub(after, stop - 1):gsub("%s+$", "")
        i = stop
      end
      name = name:lower()
      if name:sub(-1) == "*" then
        -- RFC 5987 extended value: charset'lang'percent-encoded
        local enc = v:match("^[^']*'[^']*'(.*)$")
        if enc then params[name:sub(1, -2)] = datastructures.unquote(enc) end
      elseif params[name] == nil then
        params[name] = v
      end
    end
  end
  return main, params
end

---Parses an urlencoded body into FormData.
---@param body string
---@param opts? table max_fields (default 1000)
---@return lasgi.FormData
function M.urlencoded(body, opts)
  local qp = datastructures.query_params(body)
  local max_fields = opts and opts.max_fields or 1000
  if #qp.list > max_fields then
    error(exceptions.http(400, ("Too many fields. Maximum number of fields is %d."):format(max_fields)), 0)
  end
  return datastructures.form_data(qp.list)
end

local Multipart = { __name = "lasgi.MultipartParser" }
Multipart.__index = Multipart

local function bad(msg) error(exceptions.http(400, msg), 0) end

---A streaming multipart/form-data parser. Feed it chunks, then call finish() for the FormData.
---opts: max_files (1000), max_fields (1000), max_part_size (1 MiB, for non-file parts),
---spool_threshold (1 MiB: file parts past it move to a temporary file).
---@param boundary string
---@param opts? table
---@return table parser
function M.multipart(boundary, opts)
  if type(boundary) ~= "string" or boundary == "" or #boundary > 200 then
    bad("Missing or invalid multipart boundary")
  end
  opts = opts or {}
  return setmetatable({
    delim = "\r\n--" .. boundary,
    -- The body starts with "--boundary": a leading CRLF lets one delimiter search find the first one too.
    buf = "\r\n",
    state = "preamble",
    list = {},
    files = 0,
    fields = 0,
    max_files = opts.max_files or 1000,
    max_fields = opts.max_fields or 1000,
    max_part_size = opts.max_part_size or 1024 * 1024,
    threshold = opts.spool_threshold or 1024 * 1024,
  }, Multipart)
end

function Multipart:start_part(head)
  local headers = datastructures.headers()
  for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if not k then bad("Malformed multipart part header") end
    headers:add(k, v)
  end
  local disp, params = M.parse_options_header(headers:get("content-disposition"))
  if disp ~= "form-data" or not params.name then bad("Multipart part without a form-data name") end
  local part = { name = params.name }
  if params.filename then
    self.files = self.files + 1
    if self.files > self.max_files then
      bad(("Too many files. Maximum number of files is %d."):format(self.max_files))
    end
    part.file = datastructures.upload_file(params.filename,
      headers:get("content-type") or "application/octet-stream", headers, self.threshold)
  else
    self.fields = self.fields + 1
    if self.fields > self.max_fields then
      bad(("Too many fields. Maximum number of fields is %d."):format(self.max_fields))
    end
    part.chunks, part.size = {}, 0
  end
  self.part = part
end

function Multipart:part_data(data)
  if data == "" then return end
  local part = self.part
  if part.file then
    part.file:write(data)
  else
    part.size = part.size + #data
    if part.size > self.max_part_size then
      error(exceptions.http(413, ("Part '%s' exceeds %d bytes"):format(part.name, self.max_part_size)), 0)
    end
    part.chunks[#part.chunks + 1] = data
  end
end

function Multipart:end_part()
  local part = self.part
  local value = part.file or table.concat(part.chunks)
  if part.file then part.file:seek(0) end
  self.list[#self.list + 1] = { part.name, value }
  self.part = nil
end

---Feeds the next piece of the body.
---@param chunk string
function Multipart:feed(chunk)
  self.buf = self.buf .. chunk
  local delim = self.delim
  while true do
    local buf = self.buf
    if self.state == "preamble" or self.state == "body" then
      local s, e = buf:find(delim, 1, true)
      if s then
        if self.state == "body" then
          self:part_data(buf:sub(1, s - 1))
          self:end_part()
        end
        self.buf = buf:sub(e + 1)
        self.state = "after_delim"
      else
        -- Keep a tail that may hold the start of a delimiter split across chunks.
        local keep = #delim - 1
        if #buf > keep then
          if self.state == "body" then self:part_data(buf:sub(1, #buf - keep)) end
          self.buf = buf:sub(#buf - keep + 1)
        end
        return
      end
    elseif self.state == "after_delim" then
      if #buf < 2 then return end
      if buf:sub(1, 2) == "--" then
        self.state = "done"
        self.buf = ""
        return
      end
      local eol = buf:find("\r\n", 1, true)
      if not eol then
        if #buf > 1024 then bad("Malformed multipart delimiter line") end
        return
      end
      if buf:sub(1, eol - 1):find("[^ \t]") then bad("Malformed multipart delimiter line") end
      self.buf = buf:sub(eol + 2)
      self.state = "headers"
    elseif self.state == "headers" then
      local s, e = buf:find("\r\n\r\n", 1, true)
      if not s then
        if buf:sub(1, 2) == "\r\n" then
          bad("Multipart part without headers")
        end
        if #buf > 16384 then bad("Multipart part headers too large") end
        return
      end
      self:start_part(buf:sub(1, s - 1))
      self.buf = buf:sub(e + 1)
      self.state = "body"
    else -- done: ignore the epilogue
      self.buf = ""
      return
    end
  end
end

---Ends the body; returns the FormData or raises HTTPException(400) if the body was cut short.
---@return lasgi.FormData
function Multipart:finish()
  if self.state ~= "done" then
    if self.part and self.part.file then self.part.file:close() end
    for _, p in ipairs(self.list) do
      if type(p[2]) == "table" then p[2]:close() end
    end
    bad("Multipart body ended before its closing delimiter")
  end
  return datastructures.form_data(self.list)
end

return M
