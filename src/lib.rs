use mlua::prelude::*;
#[cfg_attr(feature = "module", mlua::lua_module)]
pub fn luvrs(lua: &Lua) -> LuaResult<LuaTable> { lua.create_table() }
