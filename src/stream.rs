//! Streams (TCP now, pipes and TTYs later): listen/accept, reading, the write queue, shutdown, and the
//! I/O dispatch the loop runs for a ready stream.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, name, ok0, Errno, UV_EOF};
use crate::event_loop::{call, call_done, call_read, Core, State};
use crate::handle::{Data, Kind};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use mlua::prelude::*;
use socket2::Socket;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

/// Reads per stream per loop iteration before others get a turn.
const READS_PER_TURN: usize = 32;
/// Connections accepted per listener per loop iteration.
const ACCEPTS_PER_TURN: usize = 64;
/// Buffers gathered into one writev.
const IOV_PER_WRITE: usize = 64;
/// The largest batch buffer a stream keeps for reuse.
const SPARE_MAX: usize = 64 * 1024;

/// A buffer of a write: a Lua string (a 64 MiB write is not copied), or bytes copied from small
/// strings (a batch of `write_batched` calls).
pub enum Buf {
    Lua(LuaString),
    Owned(Vec<u8>),
}

/// The bytes of a `Buf`, borrowed.
pub enum Held<'a> {
    Lua(mlua::BorrowedBytes<'a>),
    Owned(&'a [u8]),
}

impl std::ops::Deref for Held<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Held::Lua(b) => b,
            Held::Owned(b) => b,
        }
    }
}

impl Buf {
    pub fn bytes(&self) -> Held<'_> {
        match self {
            Buf::Lua(s) => Held::Lua(s.as_bytes()),
            Buf::Owned(v) => Held::Owned(v),
        }
    }
}

/// One `write` call (or one batch of `write_batched` calls) not yet fully handed to the kernel.
pub struct WriteReq {
    pub bufs: Vec<Buf>,
    /// The first buffer not fully written, and how much of it was.
    pub idx: usize,
    pub off: usize,
    pub cb: Option<LuaFunction>,
    /// A file range sent after the buffers (the sendfile extension).
    pub file: Option<FileRange>,
    /// A descriptor sent along with the first byte (`write2` on an IPC pipe).
    pub send_fd: Option<OwnedFd>,
}

pub struct FileRange {
    pub file: std::fs::File,
    pub offset: i64,
    pub left: usize,
    pub sent: usize,
}

/// A finished request: its callback, its error, and for sendfile the bytes sent.
pub type Done = (Option<LuaFunction>, Option<Errno>, Option<i64>);

#[derive(Default)]
pub struct Stream {
    pub sock: Option<Socket>,
    /// The address family a TCP handle was created with, if any.
    pub family: Option<socket2::Domain>,
    /// In `State::io_ready`.
    pub queued: bool,
    /// Edge-triggered readiness seen and not yet used up.
    pub rd_ready: bool,
    pub wr_ready: bool,
    /// The peer closed its side (or the socket failed): read until EOF, not just until a short read.
    pub hup: bool,
    /// libuv's UV_HANDLE_READABLE / UV_HANDLE_WRITABLE: connected, and not shut down that way.
    pub readable: bool,
    pub writable: bool,
    pub reading: bool,
    pub listening: bool,
    pub read_cb: Option<LuaFunction>,
    pub conn_cb: Option<LuaFunction>,
    /// An accepted connection waiting for `accept`.
    pub accepted: Option<Socket>,
    /// Some while a connect is in flight, with its callback.
    pub connecting: Option<Option<LuaFunction>>,
    pub wq: VecDeque<WriteReq>,
    pub wq_bytes: usize,
    /// The last request of `wq` is this I/O phase's batch (`write_batched`), which later batched
    /// strings join; it is in `State::batched` until the phase ends.
    pub batch_open: bool,
    /// The buffers of a sent batch (one owned buffer, emptied), kept for the next batch: a batch per
    /// request should cost no malloc.
    pub spare: Vec<Buf>,
    /// Some once `shutdown` was called until it is done, with its callback.
    pub shutdown_req: Option<Option<LuaFunction>>,
    /// An error from `bind` that libuv reports from `listen`/`connect` (EADDRINUSE).
    pub delayed_error: Option<Errno>,
    /// TCP options set before the socket existed, applied when it is created (as libuv does).
    pub tcp_opts: Vec<crate::tcp::TcpOpt>,
    /// The descriptor is not a socket (a pipe from `pipe()`, a TTY, stdin): plain read/writev.
    pub not_sock: bool,
    /// A pipe created with `new_pipe(true)`: reads and writes carry descriptors (SCM_RIGHTS).
    pub ipc: bool,
    /// Descriptors received over an IPC pipe and not yet accepted, with their kind.
    pub pending_fds: VecDeque<(std::os::fd::OwnedFd, crate::handle::Kind)>,
}

impl Stream {
    pub fn fd(&self) -> Option<RawFd> {
        self.sock.as_ref().map(|s| s.as_raw_fd())
    }

    /// Closes the descriptor and stops all I/O (requests are ended by the close phase).
    pub fn shut(&mut self, poll: &mio::Poll) {
        if let Some(sock) = self.sock.take() {
            let _ = poll.registry().deregister(&mut SourceFd(&sock.as_raw_fd()));
            // As libuv: stdio descriptors are never closed, whoever opened them.
            if sock.as_raw_fd() <= 2 {
                std::mem::forget(sock);
            }
        }
        self.pending_fds.clear();
        self.accepted = None;
        self.reading = false;
        self.listening = false;
        self.readable = false;
        self.writable = false;
    }

    /// The callbacks of unfinished requests, in the order they were made.
    pub fn cancel_requests(&mut self) -> Vec<Option<LuaFunction>> {
        let mut cbs = Vec::new();
        if let Some(cb) = self.connecting.take() {
            cbs.push(cb);
        }
        cbs.extend(self.wq.drain(..).map(|r| r.cb));
        self.wq_bytes = 0;
        if let Some(cb) = self.shutdown_req.take() {
            cbs.push(cb);
        }
        cbs
    }

    pub fn release_callbacks(&mut self) {
        self.read_cb = None;
        self.conn_cb = None;
    }
}

/// Registers a new descriptor of handle `id` with the poller (both directions, edge-triggered,
/// once for its lifetime).
pub fn adopt(st: &mut State, id: usize, sock: Socket) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    st.poll.registry().register(
        &mut SourceFd(&fd),
        Token(id),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let s = st.slots[id].stream();
    for opt in s.tcp_opts.drain(..) {
        // Best effort, as in libuv: an option the new socket refuses does not fail its creation.
        let _ = opt.apply(&sock);
    }
    s.sock = Some(sock);
    Ok(())
}

/// The shared request object luvrs returns for writes, connects and shutdowns (luv returns a
/// request userdata that programs only test for truth).
pub fn req_object(core: &Core, kind: &'static str) -> LuaResult<LuaValue> {
    core.reqs.raw_get(kind)
}

pub fn listen(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.stream(1)?;
    let backlog = a.int(2)?;
    let cb = a.func(3)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    if let Some(e) = st.slots[h.id].stream().delayed_error {
        return fail(lua, e);
    }
    if st.slots[h.id].stream().sock.is_none() && h.kind == Kind::Tcp {
        if let Err(e) = crate::tcp::ensure_socket(&mut st, h.id, socket2::Domain::IPV4) {
            return fail(lua, e);
        }
    }
    let s = st.slots[h.id].stream();
    let Some(sock) = &s.sock else {
        return fail(lua, libc::EINVAL);
    };
    if let Err(e) = sock.listen(backlog.clamp(1, i32::MAX as i64) as i32) {
        return fail(lua, errno_of(&e));
    }
    s.listening = true;
    s.conn_cb = Some(cb);
    let ready = s.rd_ready;
    st.start_io(h.id, ud, ready);
    ok0(lua)
}

pub fn accept(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, server) = a.stream(1)?;
    let (_, client) = a.stream(2)?;
    let mut st = core.st()?;
    if st.slots[client.id].stream().sock.is_some() {
        return fail(lua, libc::EBUSY);
    }
    if st.slots[server.id].stream().ipc {
        let Some((fd, _)) = st.slots[server.id].stream().pending_fds.pop_front() else {
            return fail(lua, libc::EAGAIN);
        };
        // SAFETY: a received descriptor, owned by nothing else, handed to the client handle.
        let sock = unsafe { Socket::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
        if let Err(e) = sock.set_nonblocking(true) {
            return fail(lua, errno_of(&e));
        }
        let family = sock.local_addr().ok().map(|a| a.domain());
        if let Err(e) = adopt(&mut st, client.id, sock) {
            return fail(lua, errno_of(&e));
        }
        let c = st.slots[client.id].stream();
        c.family = family;
        c.readable = true;
        c.writable = true;
        return ok0(lua);
    }
    let Some(sock) = st.slots[server.id].stream().accepted.take() else {
        return fail(lua, libc::EAGAIN);
    };
    // The listener stopped accepting while this connection waited; let it go on.
    if st.slots[server.id].stream().rd_ready {
        st.queue_io(server.id);
    }
    let family = st.slots[server.id].stream().family;
    if let Err(e) = adopt(&mut st, client.id, sock) {
        return fail(lua, errno_of(&e));
    }
    let c = st.slots[client.id].stream();
    c.family = family;
    c.readable = true;
    c.writable = true;
    ok0(lua)
}

pub fn read_start(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.stream(1)?;
    let cb = a.func(2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    let s = st.slots[h.id].stream();
    // As luv: the callback is replaced even when libuv then refuses.
    s.read_cb = Some(cb);
    if s.reading {
        return fail(lua, libc::EALREADY);
    }
    if !s.readable {
        return fail(lua, libc::ENOTCONN);
    }
    s.reading = true;
    let ready = s.rd_ready;
    st.start_io(h.id, ud, ready);
    ok0(lua)
}

pub fn read_stop(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.stream(1)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return ok0(lua);
    }
    stop_reading(&mut st, h.id);
    ok0(lua)
}

/// Ends reading (`read_stop`, EOF, a read error): the handle stays active only while it listens
/// (and then `listen` already holds its userdata).
fn stop_reading(st: &mut State, id: usize) {
    let slot = &mut st.slots[id];
    let s = slot.stream();
    s.reading = false;
    s.read_cb = None;
    slot.active = s.listening;
    st.sync(id);
}

/// A stream that can be written to now, or the error luv reports: EBADF when closing or without
/// a descriptor, EPIPE after a shutdown or a read error.
fn writable(st: &mut State, id: usize) -> Result<&mut Stream, Errno> {
    let slot = &mut st.slots[id];
    if slot.closing {
        return Err(libc::EBADF);
    }
    let s = slot.stream();
    if s.sock.is_none() {
        return Err(libc::EBADF);
    }
    if !s.writable {
        return Err(libc::EPIPE);
    }
    Ok(s)
}

/// The strings of a write or a datagram: one string, or an array of strings (numbers count as
/// their string form, as in luv).
pub fn write_bufs(a: &Args, i: usize) -> LuaResult<Vec<LuaString>> {
    match a.get(i) {
        LuaValue::String(s) => Ok(vec![s.clone()]),
        LuaValue::Integer(_) | LuaValue::Number(_) => Ok(vec![a.string(i)?]),
        LuaValue::Table(t) => {
            let n = t.raw_len();
            let mut v = Vec::with_capacity(n);
            for j in 1..=n {
                match t.raw_get::<LuaValue>(j)? {
                    LuaValue::String(s) => v.push(s),
                    n @ (LuaValue::Integer(_) | LuaValue::Number(_)) => {
                        v.push(a.lua_string(n)?);
                    }
                    _ => {
                        return Err(a.invalid(
                            i,
                            &format!("table of strings expected, item {j} is not a string"),
                        ))
                    }
                }
            }
            Ok(v)
        }
        _ => Err(a.bad(i, "string or table of strings")),
    }
}

/// writev of `bufs` from buffer `idx`, byte `off`; MSG_NOSIGNAL so a closed peer gives EPIPE, not a signal.
fn writev(
    sock: &Socket,
    not_sock: bool,
    bufs: &[Buf],
    idx: usize,
    off: usize,
    send_fd: Option<RawFd>,
) -> io::Result<usize> {
    // One buffer (a batch, mostly): no vectors to build.
    if let ([buf], None, false) = (&bufs[idx..], send_fd, not_sock) {
        loop {
            match sock.send_with_flags(&buf.bytes()[off..], libc::MSG_NOSIGNAL) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    let held: Vec<_> = bufs[idx..]
        .iter()
        .take(IOV_PER_WRITE)
        .map(|b| b.bytes())
        .collect();
    let slices: Vec<IoSlice> = held
        .iter()
        .enumerate()
        .map(|(i, b)| IoSlice::new(if i == 0 { &b[off..] } else { &b[..] }))
        .collect();
    loop {
        let r = if let Some(fd) = send_fd {
            send_with_fd(sock.as_raw_fd(), &slices, fd)
        } else if not_sock {
            // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
            let n = unsafe {
                libc::writev(
                    sock.as_raw_fd(),
                    slices.as_ptr().cast(),
                    slices.len() as libc::c_int,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        } else {
            sock.send_vectored_with_flags(&slices, libc::MSG_NOSIGNAL)
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// sendmsg with one descriptor in an SCM_RIGHTS control message.
fn send_with_fd(sock: RawFd, slices: &[IoSlice], fd: RawFd) -> io::Result<usize> {
    // SAFETY: the control buffer is sized with CMSG_SPACE for one int and 8-byte aligned;
    // CMSG_FIRSTHDR/CMSG_DATA point inside it; IoSlice is ABI-compatible with iovec.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u64; space.div_ceil(8)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len();
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        let n = libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL);
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// recvmsg on an IPC pipe: the bytes, and any descriptors that came with them.
fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    // SAFETY: the control buffer is 8-byte aligned and its length is passed; the kernel fills
    // at most that; CMSG_* walk only inside it; each received descriptor is new and ours.
    unsafe {
        let mut cbuf = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len - (data as usize - cmsg as usize);
                let count = bytes / std::mem::size_of::<RawFd>();
                for k in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(k));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Ok(n as usize)
    }
}

/// Moves `(idx, off)` forward by `n` bytes; true when every buffer is written.
fn advance(bufs: &[Buf], idx: &mut usize, off: &mut usize, mut n: usize) -> bool {
    while *idx < bufs.len() {
        let left = bufs[*idx].bytes().len() - *off;
        if n < left {
            *off += n;
            return false;
        }
        n -= left;
        *idx += 1;
        *off = 0;
    }
    true
}

pub fn write(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let cb = a.opt_func(3)?;
    write_impl(lua, core, a, cb, None)
}

/// `write2(pipe, data, send_handle, cb)`: a write that carries a handle's descriptor to the
/// process at the other end of an IPC pipe.
pub fn write2(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.stream(1)?;
    let (_, other) = a.handle_of(3, "uv_tcp_t, uv_pipe_t or uv_udp_t", |k| {
        matches!(k, Kind::Tcp | Kind::Pipe | Kind::Udp)
    })?;
    let cb = a.opt_func(4)?;
    {
        let mut st = core.st()?;
        let s = st.slots[h.id].stream();
        if h.kind != Kind::Pipe || !s.ipc {
            return fail(lua, libc::EINVAL);
        }
    }
    let fd = crate::handle::fd_of(&mut *core.st()?, other.id);
    let fd = match fd {
        Ok(fd) => fd,
        Err(e) => return fail(lua, e),
    };
    // SAFETY: F_DUPFD_CLOEXEC on the handle's open descriptor; the copy is ours to close.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return fail(lua, last_errno());
    }
    // SAFETY: dup is a new descriptor nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    write_impl(lua, core, a, cb, Some(owned))
}

fn write_impl(
    lua: &Lua,
    core: &Rc<Core>,
    a: &Args,
    cb: Option<LuaFunction>,
    mut send_fd: Option<OwnedFd>,
) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.stream(1)?;
    let bufs: Vec<Buf> = write_bufs(a, 2)?.into_iter().map(Buf::Lua).collect();
    let mut st = core.st()?;
    let s = match writable(&mut st, h.id) {
        Ok(s) => s,
        Err(e) => return fail(lua, e),
    };
    let Some(sock) = &s.sock else {
        return fail(lua, libc::EBADF);
    };
    let total: usize = bufs.iter().map(|b| b.bytes().len()).sum();
    let (mut idx, mut off, mut err) = (0, 0, None);
    // An empty write still waits its turn behind queued ones (its callback says they went out).
    let mut done = total == 0 && send_fd.is_none() && s.wq.is_empty();
    if !done && s.wq.is_empty() {
        let fd = send_fd.as_ref().map(|f| f.as_raw_fd());
        match writev(sock, s.not_sock, &bufs, 0, 0, fd) {
            Ok(n) => {
                send_fd = None;
                done = advance(&bufs, &mut idx, &mut off, n);
                if !done {
                    s.wr_ready = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.wr_ready = false,
            Err(e) => {
                err = Some(errno_of(&e));
                done = true;
            }
        }
    }
    if done {
        if cb.is_none() && err.is_none() {
            // Nothing will ever observe this request: no need to keep it for the pending phase.
            let req = req_object(core, "write")?;
            return Ok(LuaMultiValue::from_vec(vec![req]));
        }
        st.req_pending(h.id, ud, cb, err);
    } else {
        let queued: usize = total - bytes_before(&bufs, idx, off);
        s.wq_bytes += queued;
        s.batch_open = false;
        s.wq.push_back(WriteReq {
            // No buffers for an empty write: the queue ends it when it comes to it, with no writev.
            bufs: if total == 0 { Vec::new() } else { bufs },
            idx,
            off,
            cb,
            file: None,
            send_fd,
        });
        st.req_start(h.id, ud);
    }
    let req = req_object(core, "write")?;
    Ok(LuaMultiValue::from_vec(vec![req]))
}

fn bytes_before(bufs: &[Buf], idx: usize, off: usize) -> usize {
    bufs[..idx].iter().map(|b| b.bytes().len()).sum::<usize>() + off
}

pub fn try_write(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.stream(1)?;
    let bufs: Vec<Buf> = write_bufs(a, 2)?.into_iter().map(Buf::Lua).collect();
    let mut st = core.st()?;
    let s = match writable(&mut st, h.id) {
        Ok(s) => s,
        Err(e) => return fail(lua, e),
    };
    let Some(sock) = &s.sock else {
        return fail(lua, libc::EBADF);
    };
    // Queued writes go first: EAGAIN keeps the byte order.
    if !s.wq.is_empty() {
        return fail(lua, libc::EAGAIN);
    }
    if bufs.iter().all(|b| b.bytes().is_empty()) {
        return 0.into_lua_multi(lua);
    }
    match writev(sock, s.not_sock, &bufs, 0, 0, None) {
        Ok(n) => (n as i64).into_lua_multi(lua),
        Err(e) => {
            if e.kind() == io::ErrorKind::WouldBlock {
                s.wr_ready = false;
            }
            fail(lua, errno_of(&e))
        }
    }
}

/// Extension: a write of the strings given as arguments 2.., with no request or callback. While the
/// I/O callbacks of a poll that woke for several handles run, the strings join the stream's batch;
/// when they have all run, the loop hands each stream's batch to the kernel in one system call, all
/// streams' batches one after the other. Otherwise the strings are written at once (or queued behind
/// earlier writes). Returns the stream's write queue size.
pub fn write_batched(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.stream(1)?;
    let bufs = (2..=a.count().max(2))
        .map(|i| a.string(i).map(Buf::Lua))
        .collect::<LuaResult<Vec<_>>>()?;
    let mut st = core.st()?;
    let holding = st.holding;
    let s = match writable(&mut st, h.id) {
        Ok(s) => s,
        Err(e) => return fail(lua, e),
    };
    let Some(sock) = &s.sock else {
        return fail(lua, libc::EBADF);
    };
    let total: usize = bufs.iter().map(|b| b.bytes().len()).sum();
    if total == 0 {
        return (s.wq_bytes as i64).into_lua_multi(lua);
    }
    let (mut idx, mut off) = (0, 0);
    if !holding && s.wq.is_empty() {
        match writev(sock, s.not_sock, &bufs, 0, 0, None) {
            Ok(n) => {
                if advance(&bufs, &mut idx, &mut off, n) {
                    return 0.into_lua_multi(lua);
                }
                s.wr_ready = false;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.wr_ready = false,
            Err(e) => return fail(lua, errno_of(&e)),
        }
    }
    s.wq_bytes += total - bytes_before(&bufs, idx, off);
    let q = s.wq_bytes;
    match s.wq.back_mut().filter(|_| s.batch_open) {
        Some(batch) => batch.bufs.extend(bufs),
        None => {
            s.batch_open = holding;
            s.wq.push_back(WriteReq {
                bufs,
                idx,
                off,
                cb: None,
                file: None,
                send_fd: None,
            });
            st.req_start(h.id, ud);
            if holding {
                st.batched.push(h.id);
            }
        }
    }
    (q as i64).into_lua_multi(lua)
}

pub fn shutdown(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.stream(1)?;
    let cb = a.opt_func(2)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::ENOTCONN);
    }
    let s = st.slots[h.id].stream();
    if s.sock.is_none() || !s.writable || s.shutdown_req.is_some() {
        return fail(lua, libc::ENOTCONN);
    }
    s.writable = false;
    s.shutdown_req = Some(cb);
    st.req_start(h.id, ud);
    st.queue_io(h.id);
    let req = req_object(core, "shutdown")?;
    Ok(LuaMultiValue::from_vec(vec![req]))
}

pub fn is_readable(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.stream(1)?;
    let r = core.st()?.slots[h.id].stream().readable;
    r.into_lua_multi(lua)
}

pub fn is_writable(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.stream(1)?;
    let r = core.st()?.slots[h.id].stream().writable;
    r.into_lua_multi(lua)
}

pub fn write_queue_size(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.stream(1)?;
    let n = core.st()?.slots[h.id].stream().wq_bytes;
    (n as i64).into_lua_multi(lua)
}

/// Hands queued writes to the kernel. Returns how many requests finished; those with a callback
/// are added to `done` with their result.
fn flush(s: &mut Stream, done: &mut Vec<Done>) -> usize {
    let mut finished = 0;
    let Some(sock) = &s.sock else { return 0 };
    while let Some(req) = s.wq.front_mut() {
        let r = if req.idx < req.bufs.len() || req.send_fd.is_some() {
            let fd = req.send_fd.as_ref().map(|f| f.as_raw_fd());
            writev(sock, s.not_sock, &req.bufs, req.idx, req.off, fd).map(|n| {
                req.send_fd = None;
                s.wq_bytes -= n;
                let before = (req.idx, req.off);
                advance(&req.bufs, &mut req.idx, &mut req.off, n);
                // A short write means the kernel's buffer is full.
                n == 0 || ((req.idx, req.off) != before && req.idx < req.bufs.len())
            })
        } else if let Some(f) = req.file.as_mut().filter(|f| f.left > 0) {
            send_file(sock, f).map(|n| {
                s.wq_bytes -= n;
                n == 0 && f.left > 0
            })
        } else {
            let mut req = s.wq.pop_front().expect("front exists");
            if s.wq.is_empty() {
                s.batch_open = false;
            }
            finished += 1;
            if req.cb.is_some() {
                done.push((req.cb, None, req.file.map(|f| f.sent as i64)));
            } else if let [Buf::Owned(v)] = &mut req.bufs[..] {
                if v.capacity() <= SPARE_MAX {
                    v.clear();
                    s.spare = req.bufs;
                }
            }
            continue;
        };
        match r {
            Ok(false) => {}
            Ok(true) => {
                s.wr_ready = false;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                s.wr_ready = false;
                break;
            }
            Err(e) => {
                let code = errno_of(&e);
                s.wq_bytes = 0;
                s.batch_open = false;
                finished += s.wq.len();
                done.extend(
                    s.wq.drain(..)
                        .filter(|r| r.cb.is_some())
                        .map(|r| (r.cb, Some(code), r.file.map(|f| f.sent as i64))),
                );
                break;
            }
        }
    }
    finished
}

/// One sendfile(2) call; a file that ends early ends the request.
fn send_file(sock: &Socket, f: &mut FileRange) -> io::Result<usize> {
    loop {
        let mut off = f.offset as libc::off_t;
        // SAFETY: both descriptors are open and owned by this request; off is valid for writes.
        let n = unsafe {
            libc::sendfile(
                sock.as_raw_fd(),
                f.file.as_raw_fd(),
                &mut off,
                f.left.min(1 << 30),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        f.offset = off;
        f.sent += n;
        if n == 0 {
            // The file is shorter than asked: what is left will never come.
            let short = f.left;
            f.left = 0;
            return Ok(short);
        }
        f.left -= n;
        return Ok(n);
    }
}

/// Extension: queues `length` bytes of the file at `path` from `offset` behind the stream's
/// other writes; the kernel copies them (sendfile), Lua never sees them. `cb(err, bytes_sent)`.
pub fn sendfile(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.stream(1)?;
    let path = a.str(2)?;
    let offset = a.opt_int(3, 0)?;
    let length = a.opt_int(4, -1)?;
    let cb = a.opt_func(5)?;
    if offset < 0 {
        return Err(a.invalid(3, "offset must not be negative"));
    }
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return fail(lua, errno_of(&e)),
    };
    let size = match file.metadata() {
        Ok(m) => m.len() as i64,
        Err(e) => return fail(lua, errno_of(&e)),
    };
    let left = if length < 0 {
        (size - offset).max(0)
    } else {
        length.min((size - offset).max(0))
    } as usize;
    let mut st = core.st()?;
    let s = match writable(&mut st, h.id) {
        Ok(s) => s,
        Err(e) => return fail(lua, e),
    };
    s.wq_bytes += left;
    s.batch_open = false;
    s.wq.push_back(WriteReq {
        bufs: Vec::new(),
        idx: 0,
        off: 0,
        cb,
        send_fd: None,
        file: Some(FileRange {
            file,
            offset,
            left,
            sent: 0,
        }),
    });
    st.req_start(h.id, ud);
    st.queue_io(h.id);
    let req = req_object(core, "write")?;
    Ok(LuaMultiValue::from_vec(vec![req]))
}

enum ReadOutcome {
    /// This many bytes are at the start of `State::buf`.
    Data(usize),
    Eof,
    Error(Errno),
}

/// The I/O phase's work for one ready stream: finish a connect, flush writes, shut down,
/// accept connections, read. Each callback runs with the state released.
pub fn process(core: &Rc<Core>, id: usize) -> LuaResult<()> {
    let _keep = core.st()?.slots[id].ud.clone();

    // A connect in flight completes when the socket turns writable.
    let connected = {
        let mut st = core.st()?;
        let s = st.slots[id].stream();
        if s.connecting.is_some() && s.wr_ready {
            let err = crate::tcp::connect_result(s);
            let cb = s.connecting.take().flatten();
            st.req_done(id);
            Some((cb, err))
        } else {
            None
        }
    };
    if let Some((Some(cb), err)) = connected {
        call(core, &cb, err.map(name))?;
    }

    if !write_out(core, id)? {
        return Ok(());
    }
    accept_ready(core, id)?;
    read_ready(core, id)
}

/// Hands a stream's queued writes to the kernel (if it can take them now), then a shutdown waiting
/// for them, and runs the callbacks of what finished. False when the handle is closing.
fn write_out(core: &Rc<Core>, id: usize) -> LuaResult<bool> {
    let (written, shut) = {
        let mut st = core.st()?;
        if st.slots[id].closing {
            return Ok(false);
        }
        let s = st.slots[id].stream();
        let mut written = Vec::new();
        let finished = if s.wr_ready && !s.wq.is_empty() {
            flush(s, &mut written)
        } else {
            0
        };
        let shut = if s.wq.is_empty() && s.connecting.is_none() {
            s.shutdown_req.take().map(|cb| {
                let r = s
                    .sock
                    .as_ref()
                    .map(|k| k.shutdown(std::net::Shutdown::Write));
                let err = match r {
                    Some(Ok(())) => None,
                    Some(Err(e)) => Some(errno_of(&e)),
                    None => Some(libc::ENOTCONN),
                };
                (cb, err, None)
            })
        } else {
            None
        };
        for _ in 0..finished {
            st.req_done(id);
        }
        if shut.is_some() {
            st.req_done(id);
        }
        (written, shut)
    };
    for (cb, err, sent) in written.into_iter().chain(shut) {
        if let Some(cb) = cb {
            call_done(core, &cb, err, sent)?;
        }
    }
    Ok(true)
}

/// Ends the I/O phase's batches (`write_batched`): each stream's batch goes to the kernel in one
/// system call, the streams one after the other, and the callbacks of writes this finishes run.
/// Sending them together rather than as each callback makes them means a peer process that sleeps is
/// woken once for many responses, not once for each; on loopback that wake-up is the largest single
/// kernel cost of a response, and the sender pays it.
pub fn flush_batches(core: &Rc<Core>) -> LuaResult<()> {
    let mut ids = {
        let mut st = core.st()?;
        if st.batched.is_empty() {
            return Ok(());
        }
        std::mem::take(&mut st.batched)
    };
    for (i, &id) in ids.iter().enumerate() {
        let _keep = {
            let mut st = core.st()?;
            let Some(slot) = st.slots.get_mut(id) else {
                continue;
            };
            let keep = slot.ud.clone();
            let Data::Stream(s) = &mut slot.data else {
                continue;
            };
            s.batch_open = false;
            keep
        };
        if let Err(e) = write_out(core, id) {
            // The streams not reached yet keep their batches for the next flush (no writable event
            // would come for them): the one after the next I/O phase, or run()'s on its way out.
            core.st()?.batched.extend_from_slice(&ids[i + 1..]);
            return Err(e);
        }
    }
    // The list's allocation is kept for the next phase.
    ids.clear();
    let mut st = core.st()?;
    if st.batched.is_empty() {
        st.batched = ids;
    }
    Ok(())
}

/// Before a stream closes: when every queued write is callback-less (batched strings, writes made
/// without a callback), they go out as far as the kernel takes them now, as immediate writes would
/// have sent them. What is left is dropped with the handle.
pub fn send_before_close(st: &mut State, id: usize) {
    let Data::Stream(s) = &mut st.slots[id].data else {
        return;
    };
    if !s.wr_ready || s.wq.is_empty() || s.wq.iter().any(|r| r.cb.is_some()) {
        return;
    }
    let finished = flush(s, &mut Vec::new());
    for _ in 0..finished {
        st.req_done(id);
    }
}

fn accept_ready(core: &Rc<Core>, id: usize) -> LuaResult<()> {
    for _ in 0..ACCEPTS_PER_TURN {
        let (cb, err) = {
            let mut st = core.st()?;
            let slot = &mut st.slots[id];
            if slot.closing {
                return Ok(());
            }
            let s = slot.stream();
            if !s.listening || !s.rd_ready || s.accepted.is_some() {
                return Ok(());
            }
            let Some(sock) = &s.sock else { return Ok(()) };
            match accept4(sock.as_raw_fd()) {
                Ok(c) => {
                    s.accepted = Some(c);
                    (s.conn_cb.clone(), None)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.rd_ready = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED)) => continue,
                Err(e) => {
                    // EMFILE and friends: report, and try again on the next turn.
                    (s.conn_cb.clone(), Some(errno_of(&e)))
                }
            }
        };
        if let Some(cb) = cb {
            call(core, &cb, err.map(name))?;
        }
        if err.is_some() {
            return Ok(());
        }
    }
    let mut st = core.st()?;
    if st.slots.get(id).is_some_and(|s| !s.closing) {
        st.queue_io(id);
    }
    Ok(())
}

fn accept4(fd: RawFd) -> io::Result<Socket> {
    // SAFETY: fd is the listening socket this stream owns; null address pointers are allowed.
    let c = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if c < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { Socket::from_raw_fd(c) })
}

fn read_ready(core: &Rc<Core>, id: usize) -> LuaResult<()> {
    for _ in 0..READS_PER_TURN {
        let (cb, outcome) = {
            let mut st = core.st()?;
            let State { slots, buf, .. } = &mut *st;
            let slot = &mut slots[id];
            if slot.closing {
                return Ok(());
            }
            let s = slot.stream();
            if !s.reading || !s.rd_ready {
                return Ok(());
            }
            let Some(sock) = &s.sock else { return Ok(()) };
            let r = if s.ipc && !s.not_sock {
                let mut fds = Vec::new();
                let r = recv_with_fds(sock.as_raw_fd(), buf, &mut fds);
                for fd in fds {
                    let k = crate::pipe::kind_of_fd(fd.as_raw_fd());
                    s.pending_fds.push_back((fd, k));
                }
                r
            } else if s.not_sock {
                // SAFETY: the descriptor is open and owned by the stream; buf is valid for writes.
                let n = unsafe { libc::read(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            } else {
                (&*sock).read(buf)
            };
            let outcome = match r {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => {
                    // A short read drained the socket; a new arrival brings a new edge. After a
                    // hang-up no edge comes, so read on until EOF.
                    if n < buf.len() && !s.hup {
                        s.rd_ready = false;
                    }
                    ReadOutcome::Data(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    s.rd_ready = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Error(errno_of(&e)),
            };
            let cb = s.read_cb.clone();
            match outcome {
                ReadOutcome::Data(_) => {}
                // As libuv 1.44: at EOF reading stops before the callback and the stream stays
                // readable (EOF persists, so a new read_start reports it again).
                ReadOutcome::Eof => stop_reading(&mut st, id),
                // On an error the stream is neither readable nor writable during the callback;
                // reading stops after it.
                ReadOutcome::Error(_) => {
                    s.readable = false;
                    s.writable = false;
                    s.rd_ready = false;
                }
            }
            (cb, outcome)
        };
        let Some(cb) = cb else { continue };
        match outcome {
            ReadOutcome::Data(n) => call_read(core, &cb, n, ())?,
            ReadOutcome::Eof => call(core, &cb, ())?,
            ReadOutcome::Error(e) => {
                call(core, &cb, if e == UV_EOF { "EOF" } else { name(e) })?;
                let mut st = core.st()?;
                if st
                    .slots
                    .get_mut(id)
                    .is_some_and(|s| !s.closing && s.stream().reading)
                {
                    stop_reading(&mut st, id);
                }
                return Ok(());
            }
        }
    }
    let mut st = core.st()?;
    if st
        .slots
        .get_mut(id)
        .is_some_and(|s| !s.closing && s.stream().reading && s.stream().rd_ready)
    {
        st.queue_io(id);
    }
    Ok(())
}
