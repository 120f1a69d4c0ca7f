-- Media types by file extension, for file responses and static files.
local M = {}

M.types = {
  html = "text/html", htm = "text/html", css = "text/css", js = "text/javascript", mjs = "text/javascript",
  json = "application/json", map = "application/json", txt = "text/plain", md = "text/markdown",
  csv = "text/csv", xml = "application/xml", svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg",
  jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp", avif = "image/avif", ico = "image/x-icon",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf", wasm = "application/wasm",
  pdf = "application/pdf", zip = "application/zip", gz = "application/gzip", tar = "application/x-tar",
  mp3 = "audio/mpeg", ogg = "audio/ogg", wav = "audio/wav", mp4 = "video/mp4", webm = "video/webm",
  lua = "text/x-lua", webmanifest = "application/manifest+json", bin = "application/octet-stream",
}

---Guesses a media type from a file name; `default` (application/octet-stream) when unknown.
---@param name string
---@param default? string
---@return string
function M.guess(name, default)
  local ext = name:match("%.([%w]+)$")
  return (ext and M.types[ext:lower()]) or default or "application/octet-stream"
end

return M
