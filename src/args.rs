//! Argument checking with luv's wording: `bad argument #2 to 'timer_start' (number expected, got nil)`.

use crate::error::misuse;
use crate::handle::{lookup, HandleRef, Kind};
use mlua::prelude::*;
use mlua::ObjectLike;

/// The arguments of one call to a luvrs function, with the function's name for error messages.
pub struct Args {
    pub name: &'static str,
    v: LuaMultiValue,
    /// For conversions Lua's C API makes (numbers and strings into each other, callable tables).
    lua: Lua,
}

fn type_name(v: &LuaValue) -> &'static str {
    match v {
        LuaValue::Nil => "nil",
        LuaValue::Boolean(_) => "boolean",
        LuaValue::Integer(_) | LuaValue::Number(_) => "number",
        LuaValue::String(_) => "string",
        LuaValue::Table(_) => "table",
        LuaValue::Function(_) => "function",
        LuaValue::Thread(_) => "thread",
        LuaValue::UserData(ud) if lookup(ud).is_some() => "uv handle",
        _ => "userdata",
    }
}

impl Args {
    pub fn new(lua: &Lua, name: &'static str, v: LuaMultiValue) -> Self {
        Args {
            name,
            v,
            lua: lua.clone(),
        }
    }

    /// How many arguments were passed (trailing nils included).
    pub fn count(&self) -> usize {
        self.v.len()
    }

    /// Argument `i` (1-based); nil past the end.
    pub fn get(&self, i: usize) -> &LuaValue {
        self.v.get(i - 1).unwrap_or(&LuaValue::Nil)
    }

    pub fn is_nil(&self, i: usize) -> bool {
        matches!(self.get(i), LuaValue::Nil)
    }

    /// The error for argument `i`: what was expected and what came.
    pub fn bad(&self, i: usize, expected: &str) -> LuaError {
        misuse(format!(
            "bad argument #{i} to '{}' ({expected} expected, got {})",
            self.name,
            type_name(self.get(i))
        ))
    }

    /// The error for argument `i` with a free-form reason.
    pub fn invalid(&self, i: usize, why: &str) -> LuaError {
        misuse(format!("bad argument #{i} to '{}' ({why})", self.name))
    }

    /// A handle of any type.
    pub fn any_handle(&self, i: usize) -> LuaResult<(&LuaAnyUserData, HandleRef)> {
        self.handle_of(i, "uv_handle_t", |_| true)
    }

    /// A handle whose kind passes `ok`, described as `what` in the error.
    pub fn handle_of(
        &self,
        i: usize,
        what: &str,
        ok: impl Fn(Kind) -> bool,
    ) -> LuaResult<(&LuaAnyUserData, HandleRef)> {
        if let LuaValue::UserData(ud) = self.get(i) {
            if let Some(h) = lookup(ud) {
                if ok(h.kind) {
                    return Ok((ud, h));
                }
            }
        }
        Err(self.bad(i, what))
    }

    pub fn handle(&self, i: usize, kind: Kind) -> LuaResult<(&LuaAnyUserData, HandleRef)> {
        self.handle_of(i, kind.type_label(), |k| k == kind)
    }

    pub fn stream(&self, i: usize) -> LuaResult<(&LuaAnyUserData, HandleRef)> {
        self.handle_of(i, "uv_stream_t", Kind::is_stream)
    }

    /// An integer; as Lua's C API does, a float with an integral value and a numeric string count.
    pub fn int(&self, i: usize) -> LuaResult<i64> {
        match self.get(i) {
            LuaValue::Integer(n) => Ok(*n),
            LuaValue::Number(f) if f.fract() == 0.0 && f.is_finite() => Ok(*f as i64),
            LuaValue::Number(_) => Err(self.invalid(i, "number has no integer representation")),
            v @ LuaValue::String(_) => match self.lua.coerce_integer(v.clone()) {
                Ok(Some(n)) => Ok(n),
                _ => Err(self.bad(i, "number")),
            },
            _ => Err(self.bad(i, "number")),
        }
    }

    pub fn opt_int(&self, i: usize, default: i64) -> LuaResult<i64> {
        if self.is_nil(i) {
            Ok(default)
        } else {
            self.int(i)
        }
    }

    /// A non-negative integer (timeouts, sizes, ports).
    pub fn uint(&self, i: usize) -> LuaResult<u64> {
        let n = self.int(i)?;
        u64::try_from(n).map_err(|_| self.invalid(i, "value must not be negative"))
    }

    pub fn boolean(&self, i: usize) -> LuaResult<bool> {
        match self.get(i) {
            LuaValue::Boolean(b) => Ok(*b),
            _ => Err(self.bad(i, "boolean")),
        }
    }

    /// A string; as Lua's C API does, a number counts as its string form.
    pub fn string(&self, i: usize) -> LuaResult<LuaString> {
        match self.get(i) {
            LuaValue::String(s) => Ok(s.clone()),
            v @ (LuaValue::Integer(_) | LuaValue::Number(_)) => {
                match self.lua.coerce_string(v.clone()) {
                    Ok(Some(s)) => Ok(s),
                    _ => Err(self.bad(i, "string")),
                }
            }
            _ => Err(self.bad(i, "string")),
        }
    }

    /// One value checked as if it were this function's only argument.
    pub fn sub(&self, v: LuaValue) -> Args {
        Args::new(&self.lua, self.name, LuaMultiValue::from_vec(vec![v]))
    }

    /// A number's string form, as Lua's C API makes it.
    pub fn lua_string(&self, v: LuaValue) -> LuaResult<LuaString> {
        self.lua
            .coerce_string(v)?
            .ok_or_else(|| misuse(format!("{}: cannot convert to a string", self.name)))
    }

    /// A function, or (as luv allows) a table whose metatable has `__call`, wrapped in one.
    fn callable(&self, v: &LuaValue) -> Option<LuaFunction> {
        match v {
            LuaValue::Function(f) => Some(f.clone()),
            LuaValue::Table(t) => {
                let mt = t.metatable()?;
                if mt.raw_get::<LuaValue>("__call").ok()?.is_nil() {
                    return None;
                }
                let t = t.clone();
                self.lua
                    .create_function(move |_, args: LuaMultiValue| t.call::<LuaMultiValue>(args))
                    .ok()
            }
            _ => None,
        }
    }

    pub fn str(&self, i: usize) -> LuaResult<String> {
        Ok(self.string(i)?.to_string_lossy())
    }

    pub fn opt_str(&self, i: usize) -> LuaResult<Option<String>> {
        if self.is_nil(i) {
            Ok(None)
        } else {
            self.str(i).map(Some)
        }
    }

    pub fn func(&self, i: usize) -> LuaResult<LuaFunction> {
        self.callable(self.get(i))
            .ok_or_else(|| self.bad(i, "function"))
    }

    pub fn opt_func(&self, i: usize) -> LuaResult<Option<LuaFunction>> {
        match self.get(i) {
            LuaValue::Nil => Ok(None),
            v => self
                .callable(v)
                .map(Some)
                .ok_or_else(|| self.bad(i, "function or nil")),
        }
    }

    pub fn opt_table(&self, i: usize) -> LuaResult<Option<LuaTable>> {
        match self.get(i) {
            LuaValue::Nil => Ok(None),
            LuaValue::Table(t) => Ok(Some(t.clone())),
            _ => Err(self.bad(i, "table or nil")),
        }
    }
}
