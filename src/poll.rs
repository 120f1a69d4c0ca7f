//! Poll handles: watch any descriptor (another library's socket, a pipe) for readability and
//! writability with libuv's level-triggered semantics: the callback runs on every loop iteration
//! while the descriptor stays ready.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, ok0};
use crate::event_loop::{call, Core, State};
use crate::handle::{create, Data, Kind};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use mlua::prelude::*;
use std::os::fd::RawFd;
use std::rc::Rc;

const READ: u8 = 1;
const WRITE: u8 = 2;
const DISCONNECT: u8 = 4;
const PRIORITIZED: u8 = 8;

pub struct Poller {
    pub fd: RawFd,
    /// Events asked for (READ | WRITE | DISCONNECT | PRIORITIZED).
    pub events: u8,
    pub cb: Option<LuaFunction>,
    /// Registered with the poller.
    pub registered: bool,
    /// In `State::io_ready`.
    pub queued: bool,
}

impl Poller {
    pub fn shut(&mut self, poll: &mio::Poll) {
        if self.registered {
            let _ = poll.registry().deregister(&mut SourceFd(&self.fd));
            self.registered = false;
        }
        self.events = 0;
    }
}

fn poller(st: &mut State, id: usize) -> &mut Poller {
    match &mut st.slots[id].data {
        Data::Poll(p) => p,
        _ => unreachable!("slot is not a poll"),
    }
}

/// `new_poll(fd)` and `new_socket_poll(fd)`: on Unix a socket is a descriptor like any other.
pub fn new_poll(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let fd = a.int(1)?;
    let fd = i32::try_from(fd).map_err(|_| a.invalid(1, "invalid file descriptor"))?;
    // SAFETY: F_GETFL only inspects the descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFL) } < 0 {
        return fail(lua, last_errno());
    }
    create(
        lua,
        core,
        Kind::Poll,
        Data::Poll(Box::new(Poller {
            fd,
            events: 0,
            cb: None,
            registered: false,
            queued: false,
        })),
    )?
    .into_lua_multi(lua)
}

fn parse_events(a: &Args, i: usize) -> LuaResult<u8> {
    let s = match a.get(i) {
        LuaValue::Nil => return Ok(READ),
        LuaValue::String(s) => s.to_str()?.to_string(),
        _ => return Err(a.bad(i, "string")),
    };
    let mut ev = 0;
    for c in s.chars() {
        ev |= match c {
            'r' => READ,
            'w' => WRITE,
            'd' => DISCONNECT,
            'p' => PRIORITIZED,
            _ => return Err(a.invalid(i, &format!("unknown poll event '{s}'"))),
        };
    }
    Ok(ev)
}

fn events_name(ev: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (READ, 'r'),
        (WRITE, 'w'),
        (DISCONNECT, 'd'),
        (PRIORITIZED, 'p'),
    ] {
        if ev & bit != 0 {
            s.push(c);
        }
    }
    s
}

pub fn poll_start(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Poll)?;
    let events = parse_events(a, 2)?;
    let cb = a.opt_func(3)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    let State { poll, slots, .. } = &mut *st;
    let Data::Poll(p) = &mut slots[h.id].data else {
        unreachable!("slot is not a poll")
    };
    let mut interest = Interest::READABLE;
    if events & WRITE != 0 {
        interest = if events & (READ | DISCONNECT | PRIORITIZED) != 0 {
            interest | Interest::WRITABLE
        } else {
            Interest::WRITABLE
        };
    }
    if events & PRIORITIZED != 0 {
        interest |= Interest::PRIORITY;
    }
    let r = if p.registered {
        poll.registry()
            .reregister(&mut SourceFd(&p.fd), Token(h.id), interest)
    } else {
        poll.registry()
            .register(&mut SourceFd(&p.fd), Token(h.id), interest)
    };
    if let Err(e) = r {
        return fail(lua, errno_of(&e));
    }
    p.registered = true;
    p.events = events;
    if cb.is_some() {
        p.cb = cb;
    }
    st.set_active(h.id, ud, true);
    // The descriptor may be ready already; an edge from before registration would be lost.
    st.queue_io(h.id);
    ok0(lua)
}

pub fn poll_stop(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Poll)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return ok0(lua);
    }
    let State { poll, slots, .. } = &mut *st;
    if let Data::Poll(p) = &mut slots[h.id].data {
        p.shut(poll);
    }
    st.set_active(h.id, ud, false);
    ok0(lua)
}

/// The events ready on `fd` right now, as poll(2) sees them.
fn ready_now(fd: RawFd, want: u8) -> Result<u8, i32> {
    let mut pfd = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    if want & READ != 0 {
        pfd.events |= libc::POLLIN;
    }
    if want & WRITE != 0 {
        pfd.events |= libc::POLLOUT;
    }
    if want & DISCONNECT != 0 {
        pfd.events |= libc::POLLRDHUP;
    }
    if want & PRIORITIZED != 0 {
        pfd.events |= libc::POLLPRI;
    }
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n < 0 {
        return Err(last_errno());
    }
    let r = pfd.revents;
    if r & libc::POLLNVAL != 0 {
        return Err(libc::EBADF);
    }
    let mut ev = 0;
    // As libuv: an error or hang-up is reported as the events asked for.
    let broken = r & (libc::POLLERR | libc::POLLHUP) != 0;
    if r & libc::POLLIN != 0 || broken {
        ev |= READ;
    }
    if r & libc::POLLOUT != 0 || broken {
        ev |= WRITE;
    }
    if r & libc::POLLRDHUP != 0 {
        ev |= DISCONNECT;
    }
    if r & libc::POLLPRI != 0 {
        ev |= PRIORITIZED;
    }
    Ok(ev & want)
}

/// The I/O phase's work for a poll handle: report what is ready, and look again next turn
/// while something is.
pub fn process(core: &Rc<Core>, id: usize) -> LuaResult<()> {
    let (cb, r, _keep) = {
        let mut st = core.st()?;
        let keep = st.slots[id].ud.clone();
        if !st.slots[id].active {
            return Ok(());
        }
        let p = poller(&mut st, id);
        if p.events == 0 {
            return Ok(());
        }
        let r = ready_now(p.fd, p.events);
        let cb = p.cb.clone();
        if matches!(r, Ok(0)) {
            return Ok(());
        }
        st.queue_io(id);
        (cb, r, keep)
    };
    if let Some(cb) = cb {
        match r {
            Ok(ev) => call(core, &cb, (LuaValue::Nil, events_name(ev)))?,
            Err(e) => call(core, &cb, crate::error::name(e))?,
        }
    }
    Ok(())
}
