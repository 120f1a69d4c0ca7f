//! Timers: `new_timer`, `timer_start`, `timer_stop`, `timer_again`, repeat and due-in.

use crate::args::Args;
use crate::error::ok0;
use crate::event_loop::{call, Core, State};
use crate::handle::{create, Data, Kind};
use mlua::prelude::*;
use std::rc::Rc;

#[derive(Default)]
pub struct Timer {
    pub cb: Option<LuaFunction>,
    pub repeat: u64,
    /// Its key in `State::timers` while running.
    pub key: Option<(u64, u64)>,
}

pub fn unschedule(st: &mut State, id: usize) {
    if let Some(key) = st.slots[id].timer().key.take() {
        st.timers.remove(&key);
    }
}

pub fn schedule(st: &mut State, id: usize, timeout: u64) {
    unschedule(st, id);
    st.seq += 1;
    let key = (st.now_ms.saturating_add(timeout), st.seq);
    st.timers.insert(key, id);
    st.slots[id].timer().key = Some(key);
}

pub fn new_timer(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    create(lua, core, Kind::Timer, Data::Timer(Timer::default()))?.into_lua_multi(lua)
}

pub fn timer_start(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Timer)?;
    let timeout = a.uint(2)?;
    let repeat = a.uint(3)?;
    let cb = a.func(4)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return crate::error::fail(lua, libc::EINVAL);
    }
    let t = st.slots[h.id].timer();
    t.cb = Some(cb);
    t.repeat = repeat;
    schedule(&mut st, h.id, timeout);
    st.set_active(h.id, ud, true);
    ok0(lua)
}

pub fn timer_stop(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Timer)?;
    let mut st = core.st()?;
    unschedule(&mut st, h.id);
    if !st.slots[h.id].closing {
        st.set_active(h.id, ud, false);
    }
    ok0(lua)
}

pub fn timer_again(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Timer)?;
    let mut st = core.st()?;
    let slot = &mut st.slots[h.id];
    if slot.closing || slot.timer().cb.is_none() {
        return crate::error::fail(lua, libc::EINVAL);
    }
    let repeat = slot.timer().repeat;
    if repeat > 0 {
        schedule(&mut st, h.id, repeat);
        st.set_active(h.id, ud, true);
    }
    ok0(lua)
}

pub fn timer_set_repeat(_lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Timer)?;
    let repeat = a.uint(2)?;
    core.st()?.slots[h.id].timer().repeat = repeat;
    Ok(LuaMultiValue::new())
}

pub fn timer_get_repeat(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Timer)?;
    let r = core.st()?.slots[h.id].timer().repeat;
    (r as i64).into_lua_multi(lua)
}

pub fn timer_get_due_in(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Timer)?;
    let mut st = core.st()?;
    let now = st.now_ms;
    let due = st.slots[h.id]
        .timer()
        .key
        .map(|(due, _)| due.saturating_sub(now))
        .unwrap_or(0);
    (due as i64).into_lua_multi(lua)
}

/// The timer phase: every timer due by the loop's time, earliest first, equal deadlines in start order.
pub fn run_timers(core: &Rc<Core>) -> LuaResult<()> {
    loop {
        let (cb, _keep) = {
            let mut st = core.st()?;
            let Some((&key, &id)) = st.timers.first_key_value() else {
                return Ok(());
            };
            if key.0 > st.now_ms {
                return Ok(());
            }
            st.timers.remove(&key);
            let keep = st.slots[id].ud.clone();
            let t = st.slots[id].timer();
            t.key = None;
            let (repeat, cb) = (t.repeat, t.cb.clone());
            if repeat > 0 {
                schedule(&mut st, id, repeat);
            } else {
                st.slots[id].active = false;
                st.sync(id);
            }
            (cb, keep)
        };
        if let Some(cb) = cb {
            call(core, &cb, ())?;
        }
    }
}
