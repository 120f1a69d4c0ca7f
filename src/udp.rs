//! UDP handles: bind, connect, send (queued when the kernel is full), receive, socket options.

use crate::args::Args;
use crate::error::{errno_of, fail, name, ok0, Errno};
use crate::event_loop::{call, call_read, Core, State};
use crate::handle::{create, id_of, Data, Kind};
use crate::stream::write_bufs;
use crate::tcp::{addr, addr_value, family};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use mlua::prelude::*;
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;

/// Datagrams received per handle per loop iteration before others get a turn.
const RECVS_PER_TURN: usize = 32;

/// A datagram the kernel did not take yet.
pub struct SendReq {
    bufs: Vec<LuaString>,
    to: Option<SockAddr>,
    pub cb: Option<LuaFunction>,
    len: usize,
}

#[derive(Default)]
pub struct Udp {
    pub sock: Option<Socket>,
    /// In `State::io_ready`.
    pub queued: bool,
    pub rd_ready: bool,
    pub wr_ready: bool,
    pub receiving: bool,
    pub recv_cb: Option<LuaFunction>,
    pub sq: VecDeque<SendReq>,
    pub sq_bytes: usize,
    pub connected: bool,
}

impl Udp {
    pub fn shut(&mut self, poll: &mio::Poll) {
        if let Some(sock) = self.sock.take() {
            let _ = poll.registry().deregister(&mut SourceFd(&sock.as_raw_fd()));
        }
        self.receiving = false;
    }

    pub fn cancel_requests(&mut self) -> Vec<Option<LuaFunction>> {
        self.sq_bytes = 0;
        self.sq.drain(..).map(|r| r.cb).collect()
    }
}

fn udp(st: &mut State, id: usize) -> &mut Udp {
    match &mut st.slots[id].data {
        Data::Udp(u) => u,
        _ => unreachable!("slot is not udp"),
    }
}

fn adopt(st: &mut State, id: usize, sock: Socket) -> io::Result<()> {
    st.poll.registry().register(
        &mut SourceFd(&sock.as_raw_fd()),
        Token(id),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    udp(st, id).sock = Some(sock);
    Ok(())
}

fn ensure_socket(st: &mut State, id: usize, d: Domain) -> Result<(), Errno> {
    if udp(st, id).sock.is_some() {
        return Ok(());
    }
    let sock =
        Socket::new(d, Type::DGRAM.nonblocking().cloexec(), None).map_err(|e| errno_of(&e))?;
    adopt(st, id, sock).map_err(|e| errno_of(&e))
}

pub fn new_udp(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let fam = match a.get(1) {
        LuaValue::Table(t) => {
            let f: LuaValue = t.get("family")?;
            let sub = a.sub(f);
            family(&sub, 1)?
        }
        _ => family(a, 1)?,
    };
    if fam == Some(Domain::UNIX) {
        return fail(lua, libc::EINVAL);
    }
    let ud = create(lua, core, Kind::Udp, Data::Udp(Box::default()))?;
    if let Some(d) = fam {
        let id = id_of(&ud)?;
        let r = ensure_socket(&mut *core.st()?, id, d);
        if let Err(e) = r {
            return fail(lua, e);
        }
    }
    ud.into_lua_multi(lua)
}

pub fn udp_open(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let fd = a.int(2)?;
    let fd = i32::try_from(fd).map_err(|_| a.invalid(2, "invalid file descriptor"))?;
    let mut st = core.st()?;
    if udp(&mut st, h.id).sock.is_some() {
        return fail(lua, libc::EBUSY);
    }
    // SAFETY: the caller hands the descriptor over to this handle, as uv_udp_open does.
    let sock = unsafe { Socket::from_raw_fd(fd) };
    if let Err(e) = sock.set_nonblocking(true) {
        std::mem::forget(sock);
        return fail(lua, errno_of(&e));
    }
    let connected = sock.peer_addr().is_ok();
    if let Err(e) = adopt(&mut st, h.id, sock) {
        return fail(lua, errno_of(&e));
    }
    udp(&mut st, h.id).connected = connected;
    ok0(lua)
}

pub fn udp_bind(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let sa = addr(a, 2, 3)?;
    let flags = a.opt_table(4)?;
    let flag = |k: &str| -> LuaResult<bool> {
        Ok(match &flags {
            Some(t) => t.get::<Option<bool>>(k)?.unwrap_or(false),
            None => false,
        })
    };
    let (ipv6only, reuseaddr, reuseport) =
        (flag("ipv6only")?, flag("reuseaddr")?, flag("reuseport")?);
    let mut st = core.st()?;
    if let Err(e) = ensure_socket(&mut st, h.id, Domain::for_address(sa)) {
        return fail(lua, e);
    }
    let sock = udp(&mut st, h.id).sock.as_ref().expect("socket ensured");
    let r = (|| {
        if ipv6only {
            sock.set_only_v6(true)?;
        }
        if reuseaddr {
            sock.set_reuse_address(true)?;
        }
        if reuseport {
            sock.set_reuse_port(true)?;
        }
        sock.bind(&SockAddr::from(sa))
    })();
    match r {
        Ok(()) => ok0(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

pub fn udp_connect(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let mut st = core.st()?;
    if a.is_nil(2) && a.is_nil(3) {
        // Disconnect: an AF_UNSPEC address dissolves the association.
        let u = udp(&mut st, h.id);
        if !u.connected {
            return fail(lua, libc::ENOTCONN);
        }
        if let Some(sock) = &u.sock {
            // SAFETY: a zeroed sockaddr with AF_UNSPEC, its size passed along.
            let r = unsafe {
                let mut sa: libc::sockaddr = std::mem::zeroed();
                sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
                libc::connect(
                    sock.as_raw_fd(),
                    &sa,
                    std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                )
            };
            let e = io::Error::last_os_error();
            if r != 0 && e.raw_os_error() != Some(libc::EAFNOSUPPORT) {
                return fail(lua, errno_of(&e));
            }
        }
        u.connected = false;
        return ok0(lua);
    }
    let sa = addr(a, 2, 3)?;
    if udp(&mut st, h.id).connected {
        return fail(lua, libc::EISCONN);
    }
    if let Err(e) = ensure_socket(&mut st, h.id, Domain::for_address(sa)) {
        return fail(lua, e);
    }
    let u = udp(&mut st, h.id);
    let sock = u.sock.as_ref().expect("socket ensured");
    match sock.connect(&SockAddr::from(sa)) {
        Ok(()) => {
            u.connected = true;
            ok0(lua)
        }
        Err(e) => fail(lua, errno_of(&e)),
    }
}

fn name_of(lua: &Lua, core: &Rc<Core>, a: &Args, peer: bool) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let r = {
        let mut st = core.st()?;
        let u = udp(&mut st, h.id);
        match &u.sock {
            None => Err(libc::EBADF),
            Some(_) if peer && !u.connected => Err(libc::ENOTCONN),
            Some(k) => {
                let r = if peer { k.peer_addr() } else { k.local_addr() };
                r.map_err(|e| errno_of(&e))
            }
        }
    };
    match r {
        Ok(sa) => addr_value(lua, &sa)?.into_lua_multi(lua),
        Err(e) => fail(lua, e),
    }
}

pub fn udp_getsockname(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    name_of(lua, core, a, false)
}

pub fn udp_getpeername(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    name_of(lua, core, a, true)
}

/// The destination of a send: an address, or none on a connected handle (EISCONN if both,
/// EDESTADDRREQ if neither).
fn dest(a: &Args, i: usize, connected: bool) -> LuaResult<Result<Option<SockAddr>, Errno>> {
    if a.is_nil(i) && a.is_nil(i + 1) {
        return Ok(if connected {
            Ok(None)
        } else {
            Err(libc::EDESTADDRREQ)
        });
    }
    let sa = addr(a, i, i + 1)?;
    Ok(if connected {
        Err(libc::EISCONN)
    } else {
        Ok(Some(SockAddr::from(sa)))
    })
}

fn send_now(sock: &Socket, bufs: &[LuaString], to: Option<&SockAddr>) -> io::Result<usize> {
    let held: Vec<_> = bufs.iter().map(|b| b.as_bytes()).collect();
    let slices: Vec<IoSlice> = held.iter().map(|b| IoSlice::new(b)).collect();
    loop {
        let r = match to {
            Some(sa) => sock.send_to_vectored_with_flags(&slices, sa, libc::MSG_NOSIGNAL),
            None => sock.send_vectored_with_flags(&slices, libc::MSG_NOSIGNAL),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Prepares a send: the socket exists (auto-bound to the destination's family) and the
/// destination fits the connection state.
fn prepare(
    st: &mut State,
    a: &Args,
    id: usize,
    i: usize,
) -> LuaResult<Result<Option<SockAddr>, Errno>> {
    let connected = udp(st, id).connected;
    let to = match dest(a, i, connected)? {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(sa) = &to {
        if let Err(e) = ensure_socket(st, id, sa.domain()) {
            return Ok(Err(e));
        }
    }
    if udp(st, id).sock.is_none() {
        return Ok(Err(libc::EBADF));
    }
    Ok(Ok(to))
}

pub fn udp_send(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Udp)?;
    let bufs = write_bufs(a, 2)?;
    let cb = a.opt_func(5)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EBADF);
    }
    let to = match prepare(&mut st, a, h.id, 3)? {
        Ok(t) => t,
        Err(e) => return fail(lua, e),
    };
    let len: usize = bufs.iter().map(|b| b.as_bytes().len()).sum();
    // As libuv 1.44: the datagram waits in the send queue until the I/O phase sends it.
    let u = udp(&mut st, h.id);
    u.sq_bytes += len;
    u.sq.push_back(SendReq { bufs, to, cb, len });
    st.req_start(h.id, ud);
    st.queue_io(h.id);
    // Debian's luv returns 0 here, not a request.
    ok0(lua)
}

pub fn udp_try_send(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let bufs = write_bufs(a, 2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EBADF);
    }
    let to = match prepare(&mut st, a, h.id, 3)? {
        Ok(t) => t,
        Err(e) => return fail(lua, e),
    };
    let u = udp(&mut st, h.id);
    if !u.sq.is_empty() {
        return fail(lua, libc::EAGAIN);
    }
    let sock = u.sock.as_ref().expect("socket prepared");
    match send_now(sock, &bufs, to.as_ref()) {
        Ok(n) => (n as i64).into_lua_multi(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

pub fn udp_recv_start(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Udp)?;
    let cb = a.func(2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    // As luv: the callback is replaced even when libuv then refuses.
    udp(&mut st, h.id).recv_cb = Some(cb);
    if udp(&mut st, h.id).receiving {
        return fail(lua, libc::EALREADY);
    }
    if udp(&mut st, h.id).sock.is_none() {
        // libuv binds an unbound handle to 0.0.0.0:0 before receiving.
        if let Err(e) = ensure_socket(&mut st, h.id, Domain::IPV4) {
            return fail(lua, e);
        }
        let sock = udp(&mut st, h.id).sock.as_ref().expect("socket ensured");
        let any = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        if let Err(e) = sock.bind(&SockAddr::from(any)) {
            return fail(lua, errno_of(&e));
        }
    }
    let u = udp(&mut st, h.id);
    u.receiving = true;
    let ready = u.rd_ready;
    st.start_io(h.id, ud, ready);
    ok0(lua)
}

pub fn udp_recv_stop(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Udp)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return ok0(lua);
    }
    let u = udp(&mut st, h.id);
    u.receiving = false;
    u.recv_cb = None;
    st.set_active(h.id, ud, false);
    ok0(lua)
}

fn with_sock(
    lua: &Lua,
    core: &Rc<Core>,
    a: &Args,
    f: impl FnOnce(&Socket) -> io::Result<()>,
) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let mut st = core.st()?;
    let Some(sock) = &udp(&mut st, h.id).sock else {
        return fail(lua, libc::EBADF);
    };
    match f(sock) {
        Ok(()) => ok0(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

fn is_v6(sock: &Socket) -> bool {
    sock.local_addr()
        .map(|a| a.domain() == Domain::IPV6)
        .unwrap_or(false)
}

pub fn udp_set_broadcast(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let on = a.boolean(2)?;
    with_sock(lua, core, a, |s| s.set_broadcast(on))
}

/// A TTL argument; out of range is libuv's EINVAL, returned rather than raised.
fn ttl_arg(a: &Args, i: usize) -> LuaResult<Option<u32>> {
    let t = a.int(i)?;
    Ok((1..=255).contains(&t).then_some(t as u32))
}

pub fn udp_set_ttl(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let Some(t) = ttl_arg(a, 2)? else {
        return fail(lua, libc::EINVAL);
    };
    with_sock(lua, core, a, |s| {
        if is_v6(s) {
            s.set_unicast_hops_v6(t)
        } else {
            s.set_ttl(t)
        }
    })
}

pub fn udp_set_multicast_loop(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let on = a.boolean(2)?;
    with_sock(lua, core, a, |s| {
        if is_v6(s) {
            s.set_multicast_loop_v6(on)
        } else {
            s.set_multicast_loop_v4(on)
        }
    })
}

pub fn udp_set_multicast_ttl(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let Some(t) = ttl_arg(a, 2)? else {
        return fail(lua, libc::EINVAL);
    };
    with_sock(lua, core, a, |s| {
        if is_v6(s) {
            s.set_multicast_hops_v6(t)
        } else {
            s.set_multicast_ttl_v4(t)
        }
    })
}

pub fn udp_set_multicast_interface(
    lua: &Lua,
    core: &Rc<Core>,
    a: &Args,
) -> LuaResult<LuaMultiValue> {
    let iface = a.opt_str(2)?;
    let ip = match iface.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<IpAddr>()
                .map_err(|_| a.invalid(2, &format!("invalid interface address '{s}'")))?,
        ),
    };
    with_sock(lua, core, a, |s| match ip {
        Some(IpAddr::V4(v4)) => s.set_multicast_if_v4(&v4),
        None if !is_v6(s) => s.set_multicast_if_v4(&Ipv4Addr::UNSPECIFIED),
        _ => s.set_multicast_if_v6(0),
    })
}

pub fn udp_set_membership(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let group = a.str(2)?;
    let iface = a.opt_str(3)?;
    let join = match a.str(4)?.as_str() {
        "join" => true,
        "leave" => false,
        other => return Err(a.invalid(4, &format!("invalid membership '{other}'"))),
    };
    let g: IpAddr = group
        .parse()
        .map_err(|_| a.invalid(2, &format!("invalid multicast address '{group}'")))?;
    let i: Option<IpAddr> = match iface.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| a.invalid(3, &format!("invalid interface address '{s}'")))?,
        ),
    };
    let (_, h) = a.handle(1, Kind::Udp)?;
    {
        let mut st = core.st()?;
        let d = if g.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        if let Err(e) = ensure_socket(&mut st, h.id, d) {
            return fail(lua, e);
        }
    }
    with_sock(lua, core, a, |s| match g {
        IpAddr::V4(g4) => {
            let i4 = match i {
                Some(IpAddr::V4(x)) => x,
                _ => Ipv4Addr::UNSPECIFIED,
            };
            if join {
                s.join_multicast_v4(&g4, &i4)
            } else {
                s.leave_multicast_v4(&g4, &i4)
            }
        }
        IpAddr::V6(g6) => {
            if join {
                s.join_multicast_v6(&g6, 0)
            } else {
                s.leave_multicast_v6(&g6, 0)
            }
        }
    })
}

pub fn udp_get_send_queue_size(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let n = udp(&mut *core.st()?, h.id).sq_bytes;
    (n as i64).into_lua_multi(lua)
}

pub fn udp_get_send_queue_count(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Udp)?;
    let n = udp(&mut *core.st()?, h.id).sq.len();
    (n as i64).into_lua_multi(lua)
}

enum Recv {
    /// This many bytes at the start of `State::buf`, the sender, and whether it was truncated.
    Datagram(usize, LuaTable, bool),
    Drained,
    Error(Errno),
}

/// The I/O phase's work for a ready UDP handle: flush queued sends, then receive.
pub fn process(lua: &Lua, core: &Rc<Core>, id: usize) -> LuaResult<()> {
    let _keep = core.st()?.slots[id].ud.clone();
    let sent = {
        let mut st = core.st()?;
        let u = udp(&mut st, id);
        let mut done = Vec::new();
        // Sends are tried whenever some wait: a new socket may not have reported writability yet.
        if !u.sq.is_empty() {
            if let Some(sock) = &u.sock {
                while let Some(req) = u.sq.front() {
                    match send_now(sock, &req.bufs, req.to.as_ref()) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            u.wr_ready = false;
                            break;
                        }
                        r => {
                            let req = u.sq.pop_front().expect("front exists");
                            u.sq_bytes -= req.len;
                            done.push((req.cb, r.err().map(|e| errno_of(&e))));
                        }
                    }
                }
            }
        }
        for _ in 0..done.len() {
            st.req_done(id);
        }
        done
    };
    for (cb, err) in sent {
        if let Some(cb) = cb {
            call(core, &cb, err.map(name))?;
        }
    }

    for _ in 0..RECVS_PER_TURN {
        let (cb, r) = {
            let mut st = core.st()?;
            let State { slots, buf, .. } = &mut *st;
            let slot = &mut slots[id];
            if slot.closing {
                return Ok(());
            }
            let Data::Udp(u) = &mut slot.data else {
                return Ok(());
            };
            if !u.receiving || !u.rd_ready {
                return Ok(());
            }
            let Some(sock) = &u.sock else { return Ok(()) };
            let mut from: libc::sockaddr_storage =
                // SAFETY: an all-zero sockaddr_storage is a valid value.
                unsafe { std::mem::zeroed() };
            let mut fromlen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: buf and from are valid for writes of the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_storage).cast(),
                    &mut fromlen,
                )
            };
            let r = if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => {
                        u.rd_ready = false;
                        Recv::Drained
                    }
                    _ => Recv::Error(errno_of(&e)),
                }
            } else {
                let n = n as usize;
                let partial = n > buf.len();
                // SAFETY: recvfrom filled `from` with an address of `fromlen` bytes.
                let sa = unsafe { SockAddr::new(from, fromlen) };
                Recv::Datagram(n.min(buf.len()), addr_value(lua, &sa)?, partial)
            };
            (u.recv_cb.clone(), r)
        };
        let Some(cb) = cb else { return Ok(()) };
        let flags = lua.create_table()?;
        match r {
            Recv::Datagram(n, addr, partial) => {
                if partial {
                    flags.set("partial", true)?;
                }
                call_read(core, &cb, n, (addr, flags))?;
            }
            // libuv tells the callback when a drain ends with nothing more to read.
            Recv::Drained => {
                call(
                    core,
                    &cb,
                    (LuaValue::Nil, LuaValue::Nil, LuaValue::Nil, flags),
                )?;
                return Ok(());
            }
            Recv::Error(e) => {
                call(core, &cb, (name(e), LuaValue::Nil, LuaValue::Nil, flags))?;
                return Ok(());
            }
        }
    }
    let mut st = core.st()?;
    if st.slots.get(id).is_some_and(|s| !s.closing) {
        st.queue_io(id);
    }
    Ok(())
}
