//! TCP handles: creation, bind, connect, addresses and socket options. Stream functions come from
//! `stream.rs`.

use crate::args::Args;
use crate::error::{errno_of, fail, ok0, Errno};
use crate::event_loop::{Core, State};
use crate::handle::{create, Data, Kind};
use crate::stream::{adopt, req_object, Stream};
use mlua::prelude::*;
use socket2::{Domain, SockAddr, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::FromRawFd;
use std::rc::Rc;

/// Parses a family argument: "inet", "inet6", "unix", "unspec", or the AF_* number.
pub fn family(a: &Args, i: usize) -> LuaResult<Option<Domain>> {
    match a.get(i) {
        LuaValue::Nil => Ok(None),
        LuaValue::String(s) => match s.to_str()?.as_ref() {
            "inet" => Ok(Some(Domain::IPV4)),
            "inet6" => Ok(Some(Domain::IPV6)),
            "unix" => Ok(Some(Domain::UNIX)),
            "unspec" => Ok(None),
            other => Err(a.invalid(i, &format!("unknown address family '{other}'"))),
        },
        LuaValue::Integer(n) => match *n as i32 {
            libc::AF_INET => Ok(Some(Domain::IPV4)),
            libc::AF_INET6 => Ok(Some(Domain::IPV6)),
            libc::AF_UNIX => Ok(Some(Domain::UNIX)),
            libc::AF_UNSPEC => Ok(None),
            _ => Err(a.invalid(i, &format!("unknown address family {n}"))),
        },
        _ => Err(a.bad(i, "string or integer")),
    }
}

/// Creates the socket of a TCP handle on first need, in the family of the address it meets.
pub fn ensure_socket(st: &mut State, id: usize, domain: Domain) -> Result<(), Errno> {
    if st.slots[id].stream().sock.is_some() {
        return Ok(());
    }
    let sock = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None)
        .map_err(|e| errno_of(&e))?;
    adopt(st, id, sock).map_err(|e| errno_of(&e))?;
    st.slots[id].stream().family = Some(domain);
    Ok(())
}

/// An IP and port argument pair.
pub fn addr(a: &Args, host: usize, port: usize) -> LuaResult<SocketAddr> {
    let h = a.str(host)?;
    let p = a.int(port)?;
    let bad = || a.invalid(host, &format!("invalid IP address or port [{h}:{p}]"));
    let ip: IpAddr = h.parse().map_err(|_| bad())?;
    let p = u16::try_from(p).map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, p))
}

pub fn new_tcp(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let fam = family(a, 1)?;
    if fam == Some(Domain::UNIX) {
        return fail(lua, libc::EINVAL);
    }
    let ud = create(lua, core, Kind::Tcp, Data::Stream(Box::default()))?;
    if let Some(d) = fam {
        let id = crate::handle::id_of(&ud)?;
        let r = ensure_socket(&mut *core.st()?, id, d);
        if let Err(e) = r {
            return fail(lua, e);
        }
    }
    ud.into_lua_multi(lua)
}

pub fn tcp_open(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Tcp)?;
    let fd = a.int(2)?;
    let fd = i32::try_from(fd).map_err(|_| a.invalid(2, "invalid file descriptor"))?;
    let mut st = core.st()?;
    if st.slots[h.id].stream().sock.is_some() {
        return fail(lua, libc::EBUSY);
    }
    // SAFETY: the caller hands the descriptor over to this handle, as uv_tcp_open does.
    let sock = unsafe { Socket::from_raw_fd(fd) };
    if let Err(e) = sock.set_nonblocking(true) {
        std::mem::forget(sock);
        return fail(lua, errno_of(&e));
    }
    let family = sock.local_addr().ok().map(|a| a.domain());
    if let Err(e) = adopt(&mut st, h.id, sock) {
        return fail(lua, errno_of(&e));
    }
    let s = st.slots[h.id].stream();
    s.family = family;
    s.readable = true;
    s.writable = true;
    ok0(lua)
}

pub fn tcp_bind(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Tcp)?;
    let sa = addr(a, 2, 3)?;
    let flags = a.opt_table(4)?;
    let (ipv6only, reuseport) = match &flags {
        Some(t) => (
            t.get::<Option<bool>>("ipv6only")?.unwrap_or(false),
            t.get::<Option<bool>>("reuseport")?.unwrap_or(false),
        ),
        None => (false, false),
    };
    let mut st = core.st()?;
    if let Err(e) = ensure_socket(&mut st, h.id, Domain::for_address(sa)) {
        return fail(lua, e);
    }
    let s = st.slots[h.id].stream();
    let sock = s.sock.as_ref().expect("socket ensured");
    let setup = (|| {
        sock.set_reuse_address(true)?;
        if ipv6only {
            sock.set_only_v6(true)?;
        }
        if reuseport {
            sock.set_reuse_port(true)?;
        }
        Ok::<(), std::io::Error>(())
    })();
    if let Err(e) = setup {
        return fail(lua, errno_of(&e));
    }
    match sock.bind(&SockAddr::from(sa)) {
        Ok(()) => ok0(lua),
        // libuv reports a port in use from listen/connect, not here.
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            s.delayed_error = Some(libc::EADDRINUSE);
            ok0(lua)
        }
        Err(e) => fail(lua, errno_of(&e)),
    }
}

/// luv's address table: `{ip, port, family}` (only `family` for Unix sockets).
pub fn addr_value(lua: &Lua, sa: &SockAddr) -> LuaResult<LuaTable> {
    let t = lua.create_table_with_capacity(0, 3)?;
    if let Some(sa) = sa.as_socket() {
        t.set("ip", sa.ip().to_string())?;
        t.set("port", sa.port())?;
        t.set("family", if sa.is_ipv4() { "inet" } else { "inet6" })?;
    } else {
        t.set("family", "unix")?;
    }
    Ok(t)
}

/// The address table of the handle's own end, or of its peer's.
fn name_of(lua: &Lua, core: &Rc<Core>, a: &Args, peer: bool) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Tcp)?;
    let r = core.st()?.slots[h.id].stream().sock.as_ref().map(|s| {
        if peer {
            s.peer_addr()
        } else {
            s.local_addr()
        }
    });
    match r {
        Some(Ok(sa)) => addr_value(lua, &sa)?.into_lua_multi(lua),
        Some(Err(e)) => fail(lua, errno_of(&e)),
        None => fail(lua, libc::EBADF),
    }
}

pub fn tcp_getsockname(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    name_of(lua, core, a, false)
}

pub fn tcp_getpeername(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    name_of(lua, core, a, true)
}

pub fn tcp_connect(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Tcp)?;
    let sa = addr(a, 2, 3)?;
    let cb = a.opt_func(4)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    {
        let s = st.slots[h.id].stream();
        if s.connecting.is_some() {
            return fail(lua, libc::EALREADY);
        }
        if s.readable || s.writable || s.listening {
            return fail(lua, libc::EISCONN);
        }
    }
    if let Err(e) = ensure_socket(&mut st, h.id, Domain::for_address(sa)) {
        return fail(lua, e);
    }
    let s = st.slots[h.id].stream();
    let delayed = s.delayed_error.take();
    let sock = s.sock.as_ref().expect("socket ensured");
    let r = match delayed {
        Some(e) => Err(e),
        None => match sock.connect(&SockAddr::from(sa)) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
            Err(e) => Err(errno_of(&e)),
        },
    };
    match r {
        Ok(()) => {
            s.connecting = Some(cb);
            // Completion comes with writability; an immediate success is noticed the same way.
            st.req_start(h.id, ud);
        }
        // As libuv: a refused or failed connect is reported to the callback, on a later tick.
        Err(e) if e == libc::ECONNREFUSED || e == libc::EADDRINUSE || e == libc::ENETUNREACH => {
            st.req_pending(h.id, ud, cb, Some(e));
        }
        Err(e) => return fail(lua, e),
    }
    let req = req_object(core, "connect")?;
    Ok(LuaMultiValue::from_vec(vec![req]))
}

/// The outcome of a connect whose socket turned writable.
pub fn connect_result(s: &mut Stream) -> Option<Errno> {
    let sock = s.sock.as_ref()?;
    match sock.take_error() {
        Ok(None) => {
            if let Err(e) = sock.peer_addr() {
                return Some(errno_of(&e));
            }
            s.readable = true;
            s.writable = true;
            None
        }
        Ok(Some(e)) | Err(e) => Some(errno_of(&e)),
    }
}

/// A TCP option, applied now or, on a handle without a socket yet, when the socket is created.
#[derive(Clone, Copy, Debug)]
pub enum TcpOpt {
    NoDelay(bool),
    KeepAlive(bool, u64),
}

impl TcpOpt {
    pub fn apply(self, s: &Socket) -> std::io::Result<()> {
        match self {
            TcpOpt::NoDelay(on) => s.set_nodelay(on),
            TcpOpt::KeepAlive(on, delay) => {
                s.set_keepalive(on)?;
                if on && delay > 0 {
                    let ka = socket2::TcpKeepalive::new()
                        .with_time(std::time::Duration::from_secs(delay));
                    s.set_tcp_keepalive(&ka)?;
                }
                Ok(())
            }
        }
    }
}

fn set_opt(lua: &Lua, core: &Rc<Core>, a: &Args, opt: TcpOpt) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Tcp)?;
    let st = &mut *core.st()?;
    let s = st.slots[h.id].stream();
    let Some(sock) = &s.sock else {
        s.tcp_opts.push(opt);
        return ok0(lua);
    };
    match opt.apply(sock) {
        Ok(()) => ok0(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

pub fn tcp_nodelay(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let on = a.boolean(2)?;
    set_opt(lua, core, a, TcpOpt::NoDelay(on))
}

pub fn tcp_keepalive(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let on = a.boolean(2)?;
    let delay = if on { a.uint(3)? } else { 0 };
    set_opt(lua, core, a, TcpOpt::KeepAlive(on, delay))
}

pub fn tcp_simultaneous_accepts(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    a.handle(1, Kind::Tcp)?;
    a.boolean(2)?;
    // Meaningful on Windows only, as in libuv.
    ok0(lua)
}

pub fn tcp_close_reset(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Tcp)?;
    let cb = a.opt_func(2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return Err(crate::error::misuse(format!(
            "{}: handle is already closing",
            a.name
        )));
    }
    {
        let s = st.slots[h.id].stream();
        if s.shutdown_req.is_some() {
            return fail(lua, libc::EINVAL);
        }
        if let Some(sock) = &s.sock {
            let _ = sock.set_linger(Some(std::time::Duration::ZERO));
        }
    }
    st.begin_close(h.id, ud, cb);
    ok0(lua)
}
