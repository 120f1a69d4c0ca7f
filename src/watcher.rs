//! Idle, prepare and check handles: a callback run once per loop iteration in their phase.

use crate::args::Args;
use crate::error::ok0;
use crate::event_loop::{Core, State};
use crate::handle::{create, Data, Kind};
use mlua::prelude::*;
use std::rc::Rc;

fn list(st: &mut State, kind: Kind) -> &mut Vec<usize> {
    match kind {
        Kind::Idle => &mut st.idles,
        Kind::Prepare => &mut st.prepares,
        _ => &mut st.checks,
    }
}

pub fn new(lua: &Lua, core: &Rc<Core>, kind: Kind) -> LuaResult<LuaMultiValue> {
    create(lua, core, kind, Data::Watcher(None))?.into_lua_multi(lua)
}

pub fn start(lua: &Lua, core: &Rc<Core>, a: &Args, kind: Kind) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, kind)?;
    let cb = a.func(2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return crate::error::fail(lua, libc::EINVAL);
    }
    st.slots[h.id].data = Data::Watcher(Some(cb));
    if !st.slots[h.id].active {
        // libuv runs the most recently started first.
        list(&mut st, kind).insert(0, h.id);
        st.set_active(h.id, ud, true);
    }
    ok0(lua)
}

pub fn stop(lua: &Lua, core: &Rc<Core>, a: &Args, kind: Kind) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, kind)?;
    let mut st = core.st()?;
    if st.slots[h.id].active {
        list(&mut st, kind).retain(|&x| x != h.id);
        st.set_active(h.id, ud, false);
    }
    ok0(lua)
}
