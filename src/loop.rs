//! The loop: its state, libuv's phases, and the rules for calling back into Lua.
//!
//! Every phase finds what is due while the state is borrowed, updates the state, releases the borrow
//! and only then calls Lua, so a callback may call any luvrs function, and an error raised by a
//! callback leaves nothing half-done: work not yet dispatched stays queued for the next `run()`.

use crate::args::Args;
use crate::error::{lua_text, misuse};
use crate::handle::{Data, Kind, Slot};
use crate::stream::flush_batches;
use mio::{Events, Poll, Token};
use mlua::ffi;
use mlua::prelude::*;
use slab::Slab;
use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, VecDeque};
use std::os::raw::c_int;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The token of the signal self-pipe; handle tokens are slot numbers.
pub const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
/// The token of the waker DNS threads use to report a finished lookup.
pub const DNS_TOKEN: Token = Token(usize::MAX - 2);

/// Shared by the module's functions and every handle.
pub struct Core {
    pub st: RefCell<State>,
    /// Slots whose userdata was collected while `st` was borrowed; freed at the next safe point.
    pub garbage: RefCell<Vec<usize>>,
    /// Slot number → userdata, with weak values: lets `walk` reach handles Lua still holds
    /// without keeping them alive.
    pub weak: LuaTable,
    /// The request objects write/connect/shutdown/... return, by kind (see `stream::req_object`).
    pub reqs: LuaTable,
    /// Addresses of the handle metatables, for the fast paths' type check.
    pub metatables: RefCell<Vec<usize>>,
    /// Registry reference of the shared write request object.
    pub write_req: std::cell::Cell<i32>,
    /// Handles created so far (paces the collector steps in `handle::create`).
    pub created: std::cell::Cell<u32>,
    /// `deliver_read` as a C closure over this core; set once, right after the core is made.
    pub deliver: std::cell::OnceCell<LuaFunction>,
}

impl Core {
    /// The loop state, or a Lua error when it is already borrowed (a re-entrant call from a
    /// finalizer, for instance) rather than a panic.
    pub fn st(&self) -> LuaResult<RefMut<'_, State>> {
        self.st
            .try_borrow_mut()
            .map_err(|_| misuse("luvrs: loop state is busy (re-entrant call)"))
    }
}

/// A request whose callback runs in the next pending phase (libuv's pending queue).
pub struct Pending {
    pub id: usize,
    pub cb: Option<LuaFunction>,
    pub err: Option<i32>,
    /// Bytes sent, for requests whose callback reports them (sendfile).
    pub sent: Option<i64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Default,
    Once,
    NoWait,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Once => "once",
            Mode::NoWait => "nowait",
        }
    }
}

pub struct State {
    pub poll: Poll,
    events: Option<Events>,
    pub slots: Slab<Slot>,
    /// Running timers by (due time, start order): equal deadlines fire in start order.
    pub timers: BTreeMap<(u64, u64), usize>,
    pub seq: u64,
    /// Started idle, prepare and check handles, most recently started first (as libuv runs them).
    pub idles: Vec<usize>,
    pub prepares: Vec<usize>,
    pub checks: Vec<usize>,
    pub pending: VecDeque<Pending>,
    /// Handles whose close callback is due, in `close` order; run last-in first-out as libuv does.
    pub closing: Vec<usize>,
    /// Handles with readiness or work not yet handled (in `Stream::queued`).
    pub io_ready: VecDeque<usize>,
    /// True while the I/O callbacks of a poll that woke for several handles run: `write_batched`
    /// holds the strings until they have all run.
    pub holding: bool,
    /// Streams with an open batch (`write_batched`), sent when the I/O phase ends.
    pub batched: Vec<usize>,
    start: Instant,
    pub now_ms: u64,
    pub stop_flag: bool,
    mode: Option<Mode>,
    /// Active, referenced, not-closing handles.
    pub alive_handles: usize,
    /// Requests in flight (writes, connects, shutdowns).
    pub alive_reqs: usize,
    pub err_handler: Option<LuaFunction>,
    /// The read buffer shared by all streams.
    pub buf: Vec<u8>,
    pub signals: crate::signal::Signals,
    /// Async handles sent to whose callback has not run yet, in send order.
    pub asyncs: Vec<usize>,
    pub dns: crate::dns::Dns,
    /// Callbacks with their arguments, due in the next pending phase (fs calls with a callback).
    deferred: VecDeque<(LuaFunction, Vec<LuaValue>)>,
}

impl State {
    pub fn new() -> std::io::Result<State> {
        Ok(State {
            poll: Poll::new()?,
            events: Some(Events::with_capacity(1024)),
            slots: Slab::new(),
            timers: BTreeMap::new(),
            seq: 0,
            idles: Vec::new(),
            prepares: Vec::new(),
            checks: Vec::new(),
            pending: VecDeque::new(),
            closing: Vec::new(),
            io_ready: VecDeque::new(),
            holding: false,
            batched: Vec::new(),
            start: Instant::now(),
            now_ms: 0,
            stop_flag: false,
            mode: None,
            alive_handles: 0,
            alive_reqs: 0,
            err_handler: None,
            buf: vec![0; 64 * 1024],
            signals: crate::signal::Signals::default(),
            asyncs: Vec::new(),
            dns: crate::dns::Dns::default(),
            deferred: VecDeque::new(),
        })
    }

    pub fn hrtime(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn update_time(&mut self) {
        self.now_ms = self.start.elapsed().as_millis() as u64;
    }

    /// Queues `cb(args...)` for the next pending phase; it keeps the loop alive until then.
    pub fn defer(&mut self, cb: LuaFunction, args: Vec<LuaValue>) {
        self.alive_reqs += 1;
        self.deferred.push_back((cb, args));
    }

    pub fn alive(&self) -> bool {
        self.alive_handles > 0 || self.alive_reqs > 0 || !self.closing.is_empty()
    }

    /// Brings a slot's bookkeeping in line with its flags: the alive count, and the strong
    /// self-reference, which is kept while the handle is active, has requests or is closing.
    pub fn sync(&mut self, id: usize) {
        let slot = &mut self.slots[id];
        let count = slot.active && slot.refed && !slot.closing;
        if count != slot.counted {
            slot.counted = count;
            if count {
                self.alive_handles += 1;
            } else {
                self.alive_handles -= 1;
            }
        }
        // As in luv, a handle once started keeps itself alive until it is closed; only a handle
        // never started can be collected while open.
        if slot.closed {
            slot.ud = None;
        }
    }

    /// Keeps the userdata alive while the loop needs it (call before making a handle active).
    pub fn hold(&mut self, id: usize, ud: &LuaAnyUserData) {
        let slot = &mut self.slots[id];
        if slot.ud.is_none() {
            slot.ud = Some(ud.clone());
        }
    }

    pub fn set_active(&mut self, id: usize, ud: &LuaAnyUserData, active: bool) {
        if active {
            self.hold(id, ud);
        }
        self.slots[id].active = active;
        self.sync(id);
    }

    /// A request was started on handle `id`.
    pub fn req_start(&mut self, id: usize, ud: &LuaAnyUserData) {
        self.hold(id, ud);
        self.slots[id].reqs += 1;
        self.alive_reqs += 1;
    }

    /// A request of handle `id` that ended at once: its callback runs in the next pending phase,
    /// as libuv never calls back from within the call that made the request.
    pub fn req_pending(
        &mut self,
        id: usize,
        ud: &LuaAnyUserData,
        cb: Option<LuaFunction>,
        err: Option<i32>,
    ) {
        self.req_start(id, ud);
        self.pending.push_back(Pending {
            id,
            cb,
            err,
            sent: None,
        });
    }

    /// A request of handle `id` finished (its callback is about to run).
    pub fn req_done(&mut self, id: usize) {
        self.slots[id].reqs -= 1;
        self.alive_reqs -= 1;
        self.sync(id);
    }

    /// Makes an I/O handle active; readiness already seen (edge-triggered: no new event will come)
    /// is handled in the next I/O phase.
    pub fn start_io(&mut self, id: usize, ud: &LuaAnyUserData, ready: bool) {
        self.set_active(id, ud, true);
        if ready {
            self.queue_io(id);
        }
    }

    pub fn queue_io(&mut self, id: usize) {
        let Some(queued) = self.slots[id].data.io_queued() else {
            return;
        };
        if !*queued {
            *queued = true;
            self.io_ready.push_back(id);
        }
    }

    /// The poll timeout: `None` waits forever.
    pub fn backend_timeout(&self) -> Option<u64> {
        if self.stop_flag
            || !self.alive()
            || !self.idles.is_empty()
            || !self.pending.is_empty()
            || !self.deferred.is_empty()
            || !self.closing.is_empty()
            || !self.io_ready.is_empty()
            || !self.batched.is_empty()
            || !self.asyncs.is_empty()
        {
            return Some(0);
        }
        self.timers
            .keys()
            .next()
            .map(|&(due, _)| due.saturating_sub(self.now_ms))
    }

    /// Stops everything a handle does and schedules its close callback.
    pub fn begin_close(&mut self, id: usize, ud: &LuaAnyUserData, cb: Option<LuaFunction>) {
        self.hold(id, ud);
        self.stop_all(id);
        let slot = &mut self.slots[id];
        slot.closing = true;
        slot.close_cb = cb;
        slot.active = false;
        self.sync(id);
        self.closing.push(id);
    }

    /// Releases what a handle holds in the loop: timer entries, watcher lists, its descriptor.
    fn stop_all(&mut self, id: usize) {
        let kind = self.slots[id].kind;
        match kind {
            Kind::Timer => crate::timer::unschedule(self, id),
            Kind::Idle => self.idles.retain(|&x| x != id),
            Kind::Prepare => self.prepares.retain(|&x| x != id),
            Kind::Check => self.checks.retain(|&x| x != id),
            Kind::Signal => crate::signal::stop(self, id),
            Kind::Process => {
                if let Data::Process(p) = &mut self.slots[id].data {
                    if !p.exited {
                        p.exited = true;
                        crate::signal::unwatch(self, libc::SIGCHLD);
                    }
                }
            }
            _ => {}
        }
        match &mut self.slots[id].data {
            Data::Stream(s) => s.shut(&self.poll),
            Data::Udp(u) => u.shut(&self.poll),
            Data::Poll(p) => p.shut(&self.poll),
            _ => {}
        }
    }

    /// Frees a slot whose userdata is gone.
    pub fn free_slot(&mut self, id: usize) {
        if !self.slots.contains(id) {
            return;
        }
        if !self.slots[id].closing {
            self.stop_all(id);
            let slot = &mut self.slots[id];
            slot.active = false;
            slot.closing = true;
            slot.closed = true;
            self.sync(id);
        }
        self.slots.remove(id);
    }

    pub fn collect_garbage(&mut self, garbage: &RefCell<Vec<usize>>) {
        let ids = std::mem::take(&mut *garbage.borrow_mut());
        for id in ids {
            self.free_slot(id);
        }
    }
}

/// Calls a request's callback with its result: `(err)`, or `(err, bytes_sent)` for a sendfile.
pub fn call_done(
    core: &Core,
    cb: &LuaFunction,
    err: Option<i32>,
    sent: Option<i64>,
) -> LuaResult<()> {
    let err = err.map(crate::error::name);
    match sent {
        Some(n) => call(core, cb, (err, n)),
        None => call(core, cb, err),
    }
}

/// Calls a Lua callback; an error goes to the installed handler, or ends `run()`.
pub fn call<A: IntoLuaMulti>(core: &Core, f: &LuaFunction, args: A) -> LuaResult<()> {
    match f.call::<()>(args) {
        Ok(()) => Ok(()),
        Err(e) => {
            let handler = core.st()?.err_handler.clone();
            match handler {
                Some(h) => h.call::<()>(lua_text(&e)),
                None => Err(e),
            }
        }
    }
}

/// Calls a read callback as `cb(nil, data, rest...)`, `data` being the first `n` bytes of the
/// loop's read buffer.
///
/// The Lua string is made by `deliver_read` inside the protected call rather than beforehand with
/// `Lua::create_string`, which would need a protected call of its own (mlua's, several hundred
/// instructions per read): a memory error while copying is caught by this call's `pcall` like any
/// error of the callback, and goes to the handler or ends `run()` the same way.
pub fn call_read<A: IntoLuaMulti>(
    core: &Core,
    cb: &LuaFunction,
    n: usize,
    rest: A,
) -> LuaResult<()> {
    let Some(deliver) = core.deliver.get() else {
        return Err(misuse("luvrs: loop not initialised"));
    };
    call(core, deliver, (cb, n as LuaInteger, rest))
}

/// A closure over `core` that `call_read` calls with `(cb, n, rest...)`.
pub fn make_deliver(lua: &Lua, core: &Core) -> LuaResult<LuaFunction> {
    let core_ptr = LuaLightUserData(core as *const Core as *mut std::ffi::c_void);
    // SAFETY: pushes a C closure over the light userdata exec_raw left on the stack.
    unsafe { lua.exec_raw(core_ptr, |l| ffi::lua_pushcclosure(l, deliver_read, 1)) }
}

/// `deliver(cb, n, rest...)` calls `cb(nil, data, rest...)`, `data` being the first `n` bytes of
/// `State::buf`.
///
/// The bytes are those the read put there even though the state was released before this call
/// and Lua may have run since (a debug hook on the call, a finalizer in a collector step, the
/// sender's address table of a datagram): only the read paths of `run()`'s I/O phase write the
/// buffer, and `run()` cannot nest.
unsafe extern "C-unwind" fn deliver_read(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: upvalue 1 is the core, which is never freed (see `luvrs()` in lib.rs), so the
    // buffer, allocated once in `State::new` and never resized or replaced, outlives this call;
    // the copy below stays inside it because `n` is checked against its length (Lua code can reach
    // this function through the debug library, so its arguments are not trusted). The borrow of
    // the state ends before the first call that can raise, so a longjmp out of this frame skips no
    // destructor: from there on it holds only a pointer and integers. Lua's C-call guarantee
    // (LUA_MINSTACK free slots) covers the one value pushed beyond the arguments.
    unsafe {
        let core = &*(ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *const Core);
        let n = ffi::lua_tointegerx(l, 2, std::ptr::null_mut());
        // The borrow must be gone before `raise`, whose longjmp would skip its release.
        let src = match core.st.try_borrow() {
            Ok(st) => usize::try_from(n)
                .ok()
                .and_then(|n| st.buf.get(..n))
                .map(|b| (b.as_ptr(), b.len()))
                .ok_or(c"luvrs: read length out of range"),
            Err(_) => Err(c"luvrs: loop state is busy (re-entrant call)"),
        };
        let (ptr, len) = match src {
            Ok(src) => src,
            Err(msg) => return raise(l, msg),
        };
        let nargs = ffi::lua_gettop(l).max(2);
        ffi::lua_settop(l, nargs);
        ffi::lua_pushnil(l);
        ffi::lua_replace(l, 2);
        ffi::lua_pushlstring(l, ptr.cast(), len);
        ffi::lua_insert(l, 3);
        ffi::lua_call(l, nargs, 0);
        0
    }
}

/// Raises `msg` as a plain string error.
unsafe fn raise(l: *mut ffi::lua_State, msg: &std::ffi::CStr) -> c_int {
    // SAFETY: called from a C function with room for one more value on its stack.
    unsafe {
        ffi::lua_pushstring(l, msg.as_ptr());
        ffi::lua_error(l)
    }
}

pub fn run(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let mode = match a.opt_str(1)?.as_deref() {
        None | Some("default") => Mode::Default,
        Some("once") => Mode::Once,
        Some("nowait") => Mode::NoWait,
        Some(other) => return Err(a.invalid(1, &format!("invalid run mode '{other}'"))),
    };
    {
        let mut st = core.st()?;
        if st.mode.is_some() {
            return Err(misuse("run: loop already running"));
        }
        st.mode = Some(mode);
    }
    let r = run_phases(lua, core, mode);
    // A callback that raised may have left a batch: it goes out as the strings' writes would have.
    let flushed = flush_batches(core);
    let r = r.and_then(|alive| flushed.map(|()| alive));
    if let Ok(mut st) = core.st.try_borrow_mut() {
        st.mode = None;
        st.stop_flag = false;
    }
    let alive = r?;
    Ok(LuaMultiValue::from_vec(vec![LuaValue::Boolean(alive)]))
}

fn run_phases(lua: &Lua, core: &Rc<Core>, mode: Mode) -> LuaResult<bool> {
    let mut alive = core.st()?.alive();
    if !alive {
        core.st()?.update_time();
    }
    while alive && !core.st()?.stop_flag {
        let timeout;
        {
            let mut st = core.st()?;
            st.collect_garbage(&core.garbage);
            st.update_time();
        }
        crate::timer::run_timers(core)?;
        let ran_pending = run_pending(core)?;
        run_watchers(core, Kind::Idle)?;
        run_watchers(core, Kind::Prepare)?;
        {
            let st = core.st()?;
            timeout = if (mode == Mode::Once && !ran_pending) || mode == Mode::Default {
                st.backend_timeout()
            } else {
                Some(0)
            };
        }
        io_poll(lua, core, timeout)?;
        run_watchers(core, Kind::Check)?;
        run_closing(core)?;
        if mode == Mode::Once {
            core.st()?.update_time();
            crate::timer::run_timers(core)?;
        }
        alive = core.st()?.alive();
        if mode != Mode::Default {
            break;
        }
    }
    Ok(alive)
}

fn run_pending(core: &Rc<Core>) -> LuaResult<bool> {
    let d = core.st()?.deferred.len();
    for _ in 0..d {
        let Some((cb, args)) = core.st()?.deferred.pop_front() else {
            break;
        };
        core.st()?.alive_reqs -= 1;
        call(core, &cb, LuaMultiValue::from_vec(args))?;
    }
    let n = core.st()?.pending.len();
    for _ in 0..n {
        let (p, _keep) = {
            let mut st = core.st()?;
            let Some(p) = st.pending.pop_front() else {
                break;
            };
            let keep = st.slots[p.id].ud.clone();
            st.req_done(p.id);
            (p, keep)
        };
        if let Some(cb) = &p.cb {
            call_done(core, cb, p.err, p.sent)?;
        }
    }
    Ok(n + d > 0)
}

fn run_watchers(core: &Rc<Core>, kind: Kind) -> LuaResult<()> {
    let ids = {
        let st = core.st()?;
        let list = match kind {
            Kind::Idle => &st.idles,
            Kind::Prepare => &st.prepares,
            _ => &st.checks,
        };
        if list.is_empty() {
            return Ok(());
        }
        list.clone()
    };
    for id in ids {
        let (cb, _keep) = {
            let mut st = core.st()?;
            let Some(slot) = st.slots.get_mut(id) else {
                continue;
            };
            if !slot.active || slot.closing {
                continue;
            }
            let cb = match &slot.data {
                Data::Watcher(cb) => cb.clone(),
                _ => None,
            };
            (cb, slot.ud.clone())
        };
        if let Some(cb) = cb {
            call(core, &cb, ())?;
        }
    }
    Ok(())
}

fn io_poll(lua: &Lua, core: &Rc<Core>, timeout: Option<u64>) -> LuaResult<()> {
    {
        let mut st = core.st()?;
        let mut events = st
            .events
            .take()
            .unwrap_or_else(|| Events::with_capacity(1024));
        let timeout = if st.io_ready.is_empty() {
            timeout
        } else {
            Some(0)
        };
        let r = st
            .poll
            .poll(&mut events, timeout.map(Duration::from_millis));
        st.update_time();
        if let Err(e) = r {
            st.events = Some(events);
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(misuse(format!("run: poll failed: {e}")));
            }
            return Ok(());
        }
        let mut signalled = false;
        for ev in events.iter() {
            if ev.token() == SIGNAL_TOKEN {
                signalled = true;
                continue;
            }
            if ev.token() == DNS_TOKEN {
                continue;
            }
            let id = ev.token().0;
            let Some(slot) = st.slots.get_mut(id) else {
                continue;
            };
            match &mut slot.data {
                Data::Stream(s) => {
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        s.rd_ready = true;
                    }
                    if ev.is_read_closed() || ev.is_error() {
                        s.hup = true;
                    }
                    if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                        s.wr_ready = true;
                    }
                }
                Data::Udp(u) => {
                    if ev.is_readable() || ev.is_error() {
                        u.rd_ready = true;
                    }
                    if ev.is_writable() || ev.is_error() {
                        u.wr_ready = true;
                    }
                }
                Data::Poll(_) => {}
                _ => continue,
            }
            st.queue_io(id);
        }
        st.events = Some(events);
        if signalled {
            crate::signal::drain(&mut st);
        }
    }
    crate::signal::dispatch(core)?;
    crate::async_handle::dispatch(core)?;
    crate::dns::dispatch(lua, core)?;
    let n = core.st()?.io_ready.len();
    // One ready handle has no other answers to send along with its own: it writes at once.
    core.st()?.holding = n > 1;
    let r = dispatch_io(lua, core, n);
    core.st()?.holding = false;
    r?;
    flush_batches(core)
}

fn dispatch_io(lua: &Lua, core: &Rc<Core>, n: usize) -> LuaResult<()> {
    for _ in 0..n {
        let id = {
            let mut st = core.st()?;
            let Some(id) = st.io_ready.pop_front() else {
                break;
            };
            let kind = match st.slots.get_mut(id) {
                Some(slot) if !slot.closing => {
                    if let Some(queued) = slot.data.io_queued() {
                        *queued = false;
                    }
                    slot.kind
                }
                _ => continue,
            };
            (id, kind)
        };
        match id.1 {
            Kind::Udp => crate::udp::process(lua, core, id.0)?,
            Kind::Poll => crate::poll::process(core, id.0)?,
            _ => crate::stream::process(core, id.0)?,
        }
    }
    Ok(())
}

fn run_closing(core: &Rc<Core>) -> LuaResult<()> {
    loop {
        let (id, keep) = {
            let mut st = core.st()?;
            let Some(id) = st.closing.pop() else {
                return Ok(());
            };
            (id, st.slots[id].ud.clone())
        };
        // Requests of a closing handle end before its close callback: completed ones with their
        // result, unfinished ones with ECANCELED.
        let mut due: Vec<(Option<LuaFunction>, Option<i32>)> = Vec::new();
        let close_cb = {
            let mut st = core.st()?;
            let mut rest = VecDeque::new();
            while let Some(p) = st.pending.pop_front() {
                if p.id == id {
                    st.req_done(id);
                    due.push((p.cb, p.err));
                } else {
                    rest.push_back(p);
                }
            }
            st.pending = rest;
            let canceled = match &mut st.slots[id].data {
                Data::Stream(s) => s.cancel_requests(),
                Data::Udp(u) => u.cancel_requests(),
                _ => Vec::new(),
            };
            for cb in canceled {
                st.slots[id].reqs -= 1;
                st.alive_reqs -= 1;
                due.push((cb, Some(libc::ECANCELED)));
            }
            let slot = &mut st.slots[id];
            slot.closed = true;
            let cb = slot.close_cb.take();
            slot.data = release(std::mem::replace(&mut slot.data, Data::Watcher(None)));
            st.sync(id);
            cb
        };
        for (cb, err) in due {
            if let Some(cb) = cb {
                call(core, &cb, err.map(crate::error::name))?;
            }
        }
        if let Some(cb) = close_cb {
            call(core, &cb, ())?;
        }
        drop(keep);
    }
}

/// What a closed handle keeps: nothing that holds Lua values, so its callbacks can be collected.
fn release(data: Data) -> Data {
    match data {
        Data::Stream(mut s) => {
            s.release_callbacks();
            Data::Stream(s)
        }
        Data::Timer(mut t) => {
            t.cb = None;
            Data::Timer(t)
        }
        Data::Signal(mut s) => {
            s.cb = None;
            Data::Signal(s)
        }
        Data::Watcher(_) => Data::Watcher(None),
        Data::Udp(mut u) => {
            u.recv_cb = None;
            Data::Udp(u)
        }
        Data::Async(mut x) => {
            x.cb = None;
            x.due = None;
            Data::Async(x)
        }
        Data::Poll(mut p) => {
            p.cb = None;
            Data::Poll(p)
        }
        Data::Process(mut p) => {
            p.cb = None;
            Data::Process(p)
        }
    }
}

pub fn stop(_lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    core.st()?.stop_flag = true;
    Ok(LuaMultiValue::new())
}

pub fn loop_alive(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    let alive = core.st()?.alive();
    alive.into_lua_multi(lua)
}

pub fn loop_mode(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    let mode = core.st()?.mode;
    mode.map(Mode::name).into_lua_multi(lua)
}

pub fn now(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    (core.st()?.now_ms as i64).into_lua_multi(lua)
}

pub fn update_time(_lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    core.st()?.update_time();
    Ok(LuaMultiValue::new())
}

pub fn hrtime(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    (core.st()?.hrtime() as i64).into_lua_multi(lua)
}

pub fn backend_fd(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    use std::os::fd::AsRawFd;
    core.st()?.poll.as_raw_fd().into_lua_multi(lua)
}

pub fn backend_timeout(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    let t = core.st()?.backend_timeout();
    t.map(|t| t as i64).unwrap_or(-1).into_lua_multi(lua)
}

pub fn set_error_handler(_lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let f = a.opt_func(1)?;
    core.st()?.err_handler = f;
    Ok(LuaMultiValue::new())
}
