//! Handles: the userdata Lua holds, the loop-side slot behind it, and the functions every handle has
//! (`close`, `is_active`, `ref`, `walk`, ...).

use crate::args::Args;
use crate::error::{fail, misuse, ok0};
use crate::event_loop::{Core, State};
use crate::stream::Stream;
use crate::timer::Timer;
use mlua::ffi;
use mlua::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::rc::Rc;

/// A handle type, with libuv's name and `uv_handle_type` number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Check,
    Idle,
    Prepare,
    Tcp,
    Timer,
    Signal,
    Async,
    Pipe,
    Poll,
    Process,
    Tty,
    Udp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::Idle => "idle",
            Kind::Prepare => "prepare",
            Kind::Tcp => "tcp",
            Kind::Timer => "timer",
            Kind::Signal => "signal",
            Kind::Async => "async",
            Kind::Pipe => "pipe",
            Kind::Poll => "poll",
            Kind::Process => "process",
            Kind::Tty => "tty",
            Kind::Udp => "udp",
        }
    }

    /// libuv's `uv_handle_type` value.
    pub fn number(self) -> i64 {
        match self {
            Kind::Check => 2,
            Kind::Idle => 6,
            Kind::Prepare => 9,
            Kind::Tcp => 12,
            Kind::Timer => 13,
            Kind::Signal => 16,
            Kind::Async => 1,
            Kind::Pipe => 7,
            Kind::Poll => 8,
            Kind::Process => 10,
            Kind::Tty => 14,
            Kind::Udp => 15,
        }
    }

    /// How argument errors name the expected type, e.g. `uv_timer_t`.
    pub fn type_label(self) -> &'static str {
        match self {
            Kind::Check => "uv_check_t",
            Kind::Idle => "uv_idle_t",
            Kind::Prepare => "uv_prepare_t",
            Kind::Tcp => "uv_tcp_t",
            Kind::Timer => "uv_timer_t",
            Kind::Signal => "uv_signal_t",
            Kind::Async => "uv_async_t",
            Kind::Pipe => "uv_pipe_t",
            Kind::Poll => "uv_poll_t",
            Kind::Process => "uv_process_t",
            Kind::Tty => "uv_tty_t",
            Kind::Udp => "uv_udp_t",
        }
    }

    pub fn is_stream(self) -> bool {
        matches!(self, Kind::Tcp | Kind::Pipe | Kind::Tty)
    }
}

/// What Lua holds: a raw full userdata with luv's per-type metatable (`uv_timer`, `uv_tcp`, ...),
/// naming a slot in the loop's table of handles. The slot lives exactly as long as the userdata;
/// its `__gc` frees the slot (and closes the OS resource if `close` was never called).
#[repr(C)]
pub struct RawHandle {
    pub id: usize,
    pub kind: Kind,
    /// The loop; never freed (see `lib.rs`), so it outlives every handle.
    core: *const Core,
}

/// A handle argument, once checked: its slot and type.
#[derive(Clone, Copy, Debug)]
pub struct HandleRef {
    pub id: usize,
    pub kind: Kind,
}

thread_local! {
    /// Block address of every live handle userdata → its slot and type. Tells a luvrs handle from
    /// any other userdata without touching memory that may not be ours.
    static LIVE: RefCell<HashMap<usize, HandleRef>> = RefCell::new(HashMap::new());
}

/// The handle behind a userdata, if it is a live luvrs handle.
pub fn lookup(ud: &LuaAnyUserData) -> Option<HandleRef> {
    let addr = ud.to_pointer() as usize;
    LIVE.with(|m| m.borrow().get(&addr).copied())
}

/// The slot number of a handle just created by `create`.
pub fn id_of(ud: &LuaAnyUserData) -> LuaResult<usize> {
    lookup(ud)
        .map(|h| h.id)
        .ok_or_else(|| misuse("luvrs: not a handle"))
}

/// The registry key of a type's metatable.
pub fn metatable_key(kind: Kind) -> String {
    format!("luvrs.mt.{}", kind.name())
}

/// `__gc` of every handle metatable.
pub unsafe extern "C-unwind" fn handle_gc(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: only handle metatables carry this __gc, so argument 1 is a RawHandle block.
    let p = unsafe { ffi::lua_touserdata(l, 1) } as *const RawHandle;
    // SAFETY: as above; the block was written once by `create`.
    let h = unsafe { p.read() };
    let addr = p as usize;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        LIVE.with(|m| m.borrow_mut().remove(&addr));
        // SAFETY: the core is never freed.
        let core = unsafe { &*h.core };
        // A collection can run inside any Lua allocation, also while the loop state is borrowed;
        // then the slot is queued and freed at the next safe point instead.
        match core.st.try_borrow_mut() {
            Ok(mut st) => st.free_slot(h.id),
            Err(_) => core.garbage.borrow_mut().push(h.id),
        }
    }));
    0
}

/// Type-specific state of a handle.
pub enum Data {
    Timer(Timer),
    /// idle, prepare and check: only a callback.
    Watcher(Option<LuaFunction>),
    Stream(Box<Stream>),
    Signal(crate::signal::Signal),
    Process(crate::process::Process),
    Udp(Box<crate::udp::Udp>),
    Async(crate::async_handle::Async),
    Poll(Box<crate::poll::Poller>),
}

impl Data {
    /// The "in `State::io_ready`" flag of the handles the I/O phase serves.
    pub fn io_queued(&mut self) -> Option<&mut bool> {
        match self {
            Data::Stream(s) => Some(&mut s.queued),
            Data::Udp(u) => Some(&mut u.queued),
            Data::Poll(p) => Some(&mut p.queued),
            _ => None,
        }
    }
}

/// The loop-side state of one handle.
pub struct Slot {
    pub kind: Kind,
    /// Creation order, for `walk`.
    pub seq: u64,
    pub active: bool,
    pub refed: bool,
    /// `close` was called.
    pub closing: bool,
    /// The close callback has run; the handle is dead but Lua may still hold it.
    pub closed: bool,
    /// Whether this handle is counted in `State::alive_handles` (active, referenced, not closing).
    pub counted: bool,
    /// Requests in flight (writes, connects, shutdowns) whose callbacks are still due.
    pub reqs: u32,
    /// A strong reference to the userdata from the first start (or request) until the close
    /// callback has run: the handle stays alive without Lua holding it, as in luv.
    pub ud: Option<LuaAnyUserData>,
    pub close_cb: Option<LuaFunction>,
    pub data: Data,
}

impl Slot {
    pub fn stream(&mut self) -> &mut Stream {
        match &mut self.data {
            Data::Stream(s) => s,
            _ => unreachable!("slot is not a stream"),
        }
    }

    pub fn timer(&mut self) -> &mut Timer {
        match &mut self.data {
            Data::Timer(t) => t,
            _ => unreachable!("slot is not a timer"),
        }
    }
}

/// Creates a handle of `kind` with `data` and returns its userdata.
pub fn create(lua: &Lua, core: &Rc<Core>, kind: Kind, data: Data) -> LuaResult<LuaAnyUserData> {
    let id = {
        let mut st = core.st()?;
        st.seq += 1;
        let seq = st.seq;
        st.slots.insert(Slot {
            kind,
            seq,
            active: false,
            refed: true,
            closing: false,
            closed: false,
            counted: false,
            reqs: 0,
            ud: None,
            close_cb: None,
            data,
        })
    };
    let key = format!("{}\0", metatable_key(kind));
    let raw = RawHandle {
        id,
        kind,
        core: Rc::as_ptr(core),
    };
    // SAFETY: a new userdata block of RawHandle's size is written once, then given its metatable.
    let ud: LuaAnyUserData = unsafe {
        lua.exec_raw((), |l| {
            let p =
                ffi::lua_newuserdatauv(l, std::mem::size_of::<RawHandle>(), 0) as *mut RawHandle;
            p.write(raw);
            ffi::lua_getfield(l, ffi::LUA_REGISTRYINDEX, key.as_ptr().cast());
            ffi::lua_setmetatable(l, -2);
        })?
    };
    LIVE.with(|m| {
        m.borrow_mut()
            .insert(ud.to_pointer() as usize, HandleRef { id, kind })
    });
    core.weak.raw_set(id, &ud)?;
    // Lua's collector paces itself by the memory it sees, and each handle also owns loop-side
    // state it cannot see. Tell it: a step per batch of handles, as if that memory were allocated,
    // so dropped handles do not pile up between collections.
    let n = core.created.get().wrapping_add(1);
    core.created.set(n);
    if n.is_multiple_of(HANDLES_PER_GC_STEP) {
        let bytes = HANDLES_PER_GC_STEP as usize * (std::mem::size_of::<Slot>() + LOOP_SIDE_EXTRA);
        lua.gc_step_kbytes((bytes / 1024).max(1) as i32)?;
    }
    Ok(ud)
}

/// Handles created between two collector steps.
const HANDLES_PER_GC_STEP: u32 = 16;
/// Loop-side memory of a handle beyond its slot (a stream's box, table entries), roughly.
const LOOP_SIDE_EXTRA: usize = 256;

fn one(v: impl IntoLua, lua: &Lua) -> LuaResult<LuaMultiValue> {
    Ok(LuaMultiValue::from_vec(vec![v.into_lua(lua)?]))
}

pub fn close(_lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.any_handle(1)?;
    let cb = a.opt_func(2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return Err(misuse(format!(
            "{}: handle {} is already closing",
            a.name,
            describe(&st, h.id)
        )));
    }
    crate::stream::send_before_close(&mut st, h.id);
    st.begin_close(h.id, ud, cb);
    Ok(LuaMultiValue::new())
}

fn describe(st: &State, id: usize) -> String {
    format!("uv_{}_t#{}", st.slots[id].kind.name(), id)
}

pub fn is_active(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let active = core.st()?.slots[h.id].active;
    one(active, lua)
}

pub fn is_closing(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let closing = core.st()?.slots[h.id].closing;
    one(closing, lua)
}

pub fn ref_(_lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let mut st = core.st()?;
    st.slots[h.id].refed = true;
    st.sync(h.id);
    Ok(LuaMultiValue::new())
}

pub fn unref(_lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let mut st = core.st()?;
    st.slots[h.id].refed = false;
    st.sync(h.id);
    Ok(LuaMultiValue::new())
}

pub fn has_ref(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let r = core.st()?.slots[h.id].refed;
    one(r, lua)
}

pub fn get_type(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    Ok(LuaMultiValue::from_vec(vec![
        LuaValue::String(lua.create_string(h.kind.name())?),
        LuaValue::Integer(h.kind.number()),
    ]))
}

/// The OS descriptor behind a handle, for `fileno`, the buffer-size calls and `write2`.
pub fn fd_of(st: &mut State, id: usize) -> Result<i32, i32> {
    let slot = &mut st.slots[id];
    if slot.closing {
        return Err(libc::EBADF);
    }
    match &mut slot.data {
        Data::Stream(s) => s.fd().ok_or(libc::EBADF),
        Data::Udp(u) => u
            .sock
            .as_ref()
            .map(std::os::fd::AsRawFd::as_raw_fd)
            .ok_or(libc::EBADF),
        _ => Err(libc::EINVAL),
    }
}

pub fn fileno(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let r = fd_of(&mut *core.st()?, h.id);
    match r {
        Ok(fd) => one(fd, lua),
        Err(e) => fail(lua, e),
    }
}

fn buffer_size(lua: &Lua, core: &Rc<Core>, a: &Args, opt: libc::c_int) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.any_handle(1)?;
    let size = a.opt_int(2, 0)?;
    let fd = match fd_of(&mut *core.st()?, h.id) {
        Ok(fd) => fd,
        Err(e) => return fail(lua, e),
    };
    if size == 0 {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd is an open socket owned by the handle; v and len are valid for writes.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return fail(lua, crate::error::last_errno());
        }
        one(v as i64, lua)
    } else {
        let v = libc::c_int::try_from(size).map_err(|_| a.invalid(2, "size out of range"))?;
        // SAFETY: fd is an open socket owned by the handle; v lives across the call.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return fail(lua, crate::error::last_errno());
        }
        ok0(lua)
    }
}

pub fn send_buffer_size(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    buffer_size(lua, core, a, libc::SO_SNDBUF)
}

pub fn recv_buffer_size(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    buffer_size(lua, core, a, libc::SO_RCVBUF)
}

pub fn walk(_lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let cb = a.func(1)?;
    let ids: Vec<usize> = {
        let st = core.st()?;
        let mut v: Vec<(u64, usize)> = st
            .slots
            .iter()
            .filter(|(_, s)| !s.closed)
            .map(|(id, s)| (s.seq, id))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, id)| id).collect()
    };
    for id in ids {
        let ud: Option<LuaAnyUserData> = core.weak.raw_get(id)?;
        if let Some(ud) = ud {
            cb.call::<()>(ud)?;
        }
    }
    Ok(LuaMultiValue::new())
}
