rockspec_format = "3.0"
package = "luvrs"
version = "scm-1"
source = { url = "git+https://example.invalid/luvrs.git" }
description = {
  summary = "A libuv-like event loop for Lua 5.4 in Rust, with luv's API, and the Luvicorn LASGI server",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5", "lua-cjson" }
build = {
  -- cargo does the build: no build backend to download.
  type = "command",
  build_command = "cargo build --release --features module",
  install_command = "mkdir -p $(LUADIR) $(LIBDIR) && cp -R lua/. $(LUADIR)/ && "
    .. "cp target/release/libluvrs.so $(LIBDIR)/luvrs.so",
  install = { bin = { luvicorn = "bin/luvicorn" } },
}
