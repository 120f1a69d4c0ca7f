//! Async handles: `async_send` asks for the callback to run on the loop's next I/O phase; sends
//! before it runs coalesce into one call (with the last send's values), as in libuv.

use crate::args::Args;
use crate::error::ok0;
use crate::event_loop::{call, Core, State};
use crate::handle::{create, id_of, Data, Kind};
use mlua::prelude::*;
use std::rc::Rc;

pub struct Async {
    pub cb: Option<LuaFunction>,
    /// The values of the last send not yet delivered; Some while a call is due.
    pub due: Option<Vec<LuaValue>>,
}

fn async_of(st: &mut State, id: usize) -> &mut Async {
    match &mut st.slots[id].data {
        Data::Async(x) => x,
        _ => unreachable!("slot is not an async"),
    }
}

pub fn new_async(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let cb = a.func(1)?;
    let ud = create(
        lua,
        core,
        Kind::Async,
        Data::Async(Async {
            cb: Some(cb),
            due: None,
        }),
    )?;
    let id = id_of(&ud)?;
    // libuv starts an async handle at creation: it keeps the loop alive until closed or unrefed.
    core.st()?.set_active(id, &ud, true);
    ud.into_lua_multi(lua)
}

pub fn async_send(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Async)?;
    let mut vals = Vec::new();
    let mut i = 2;
    while i <= a.count() {
        let v = a.get(i).clone();
        match v {
            LuaValue::Nil
            | LuaValue::Boolean(_)
            | LuaValue::Integer(_)
            | LuaValue::Number(_)
            | LuaValue::String(_)
            | LuaValue::LightUserData(_) => vals.push(v),
            // As luv: values that cannot cross threads are refused.
            _ => {
                return Err(a.invalid(i, "only nil, boolean, number and string values can be sent"))
            }
        }
        i += 1;
    }
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return crate::error::fail(lua, libc::EINVAL);
    }
    let x = async_of(&mut st, h.id);
    let first = x.due.is_none();
    x.due = Some(vals);
    if first {
        st.asyncs.push(h.id);
    }
    ok0(lua)
}

/// Runs the callbacks of the handles that were sent to, in send order.
pub fn dispatch(core: &Rc<Core>) -> LuaResult<()> {
    let ids = std::mem::take(&mut core.st()?.asyncs);
    for id in ids {
        let (cb, vals, _keep) = {
            let mut st = core.st()?;
            let Some(slot) = st.slots.get_mut(id) else {
                continue;
            };
            if slot.closing {
                continue;
            }
            let keep = slot.ud.clone();
            let x = async_of(&mut st, id);
            let Some(vals) = x.due.take() else { continue };
            (x.cb.clone(), vals, keep)
        };
        if let Some(cb) = cb {
            call(core, &cb, LuaMultiValue::from_vec(vals))?;
        }
    }
    Ok(())
}
