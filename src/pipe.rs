//! Pipe handles: Unix domain sockets by path, and any descriptor opened with `pipe_open` (stdin,
//! the ends of `pipe()`). Stream functions come from `stream.rs`; `pipe()` and `socketpair()` make
//! raw descriptor pairs.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, ok0, Errno};
use crate::event_loop::Core;
use crate::handle::{create, Data, Kind};
use crate::stream::{adopt, req_object, Stream};
use mlua::prelude::*;
use socket2::{Domain, SockAddr, Socket, Type};
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;

pub fn new_pipe(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let ipc = match a.get(1) {
        LuaValue::Nil => false,
        LuaValue::Boolean(b) => *b,
        _ => return Err(a.bad(1, "boolean")),
    };
    let s = Stream {
        ipc,
        ..Default::default()
    };
    create(lua, core, Kind::Pipe, Data::Stream(Box::new(s)))?.into_lua_multi(lua)
}

/// Whether a descriptor is a socket.
pub fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat writes into a zeroed stat struct; fd validity is checked by its result.
    unsafe {
        let mut sb: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut sb) == 0 && (sb.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// Hands an open descriptor to a stream handle, as uv_pipe_open / uv_tty_init do: non-blocking,
/// readable and writable as its open mode allows.
pub fn open_fd(core: &Rc<Core>, id: usize, fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_GETFL has no memory-safety preconditions.
    let mode = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if mode < 0 {
        return Err(last_errno());
    }
    // SAFETY: setting O_NONBLOCK on a descriptor the caller hands over.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, mode | libc::O_NONBLOCK) } < 0 {
        return Err(last_errno());
    }
    let not_sock = !is_socket(fd);
    let mut st = core.st().map_err(|_| libc::EBUSY)?;
    if st.slots[id].stream().sock.is_some() {
        return Err(libc::EBUSY);
    }
    // SAFETY: the caller hands the descriptor over to this handle (stdio ones are never closed).
    let sock = unsafe { Socket::from_raw_fd(fd) };
    let registered = adopt(&mut st, id, sock);
    if let Err(e) = registered {
        // Regular files cannot be polled: keep the descriptor, as libuv's pipes never see one.
        if e.raw_os_error() != Some(libc::EPERM) {
            let s = st.slots[id].stream();
            if let Some(k) = s.sock.take() {
                std::mem::forget(k);
            }
            return Err(errno_of(&e));
        }
    }
    let s = st.slots[id].stream();
    s.not_sock = not_sock;
    let acc = mode & libc::O_ACCMODE;
    s.readable = acc == libc::O_RDONLY || acc == libc::O_RDWR;
    s.writable = acc == libc::O_WRONLY || acc == libc::O_RDWR;
    Ok(())
}

pub fn pipe_open(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Pipe)?;
    let fd = a.int(2)?;
    let fd = i32::try_from(fd).map_err(|_| a.invalid(2, "invalid file descriptor"))?;
    match open_fd(core, h.id, fd) {
        Ok(()) => ok0(lua),
        Err(e) => fail(lua, e),
    }
}

fn unix_addr(a: &Args, i: usize) -> LuaResult<SockAddr> {
    let name = a.str(i)?;
    SockAddr::unix(&name).map_err(|_| a.invalid(i, "path too long"))
}

fn new_unix_socket() -> Result<Socket, Errno> {
    Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None).map_err(|e| errno_of(&e))
}

pub fn pipe_bind(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Pipe)?;
    let addr = unix_addr(a, 2)?;
    let mut st = core.st()?;
    if st.slots[h.id].stream().sock.is_some() {
        return fail(lua, libc::EINVAL);
    }
    let sock = match new_unix_socket() {
        Ok(s) => s,
        Err(e) => return fail(lua, e),
    };
    if let Err(e) = sock.bind(&addr) {
        return fail(lua, errno_of(&e));
    }
    if let Err(e) = adopt(&mut st, h.id, sock) {
        return fail(lua, errno_of(&e));
    }
    ok0(lua)
}

pub fn pipe_connect(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Pipe)?;
    let addr = unix_addr(a, 2)?;
    let cb = a.opt_func(3)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    if st.slots[h.id].stream().sock.is_some() {
        return fail(lua, libc::EISCONN);
    }
    let err = match new_unix_socket() {
        Err(e) => Some(e),
        Ok(sock) => {
            let r = match sock.connect(&addr) {
                Ok(()) => None,
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => None,
                Err(e) => Some(errno_of(&e)),
            };
            match r {
                None => match adopt(&mut st, h.id, sock) {
                    Ok(()) => None,
                    Err(e) => Some(errno_of(&e)),
                },
                e => e,
            }
        }
    };
    match err {
        None => {
            st.slots[h.id].stream().connecting = Some(cb);
            st.req_start(h.id, ud);
        }
        // As libuv: the error arrives in the callback, on a later tick.
        Some(e) => st.req_pending(h.id, ud, cb, Some(e)),
    }
    let req = req_object(core, "connect")?;
    Ok(LuaMultiValue::from_vec(vec![req]))
}

fn name_of(lua: &Lua, core: &Rc<Core>, a: &Args, peer: bool) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Pipe)?;
    let r = {
        let mut st = core.st()?;
        let s = st.slots[h.id].stream();
        match &s.sock {
            None => Err(libc::EBADF),
            Some(k) => {
                let r = if peer { k.peer_addr() } else { k.local_addr() };
                r.map_err(|e| errno_of(&e))
            }
        }
    };
    match r {
        Ok(sa) => {
            let path = sa
                .as_pathname()
                .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
                .unwrap_or_default();
            lua.create_string(&path)?.into_lua_multi(lua)
        }
        Err(e) => fail(lua, e),
    }
}

pub fn pipe_getsockname(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    name_of(lua, core, a, false)
}

pub fn pipe_getpeername(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    name_of(lua, core, a, true)
}

pub fn pipe_chmod(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Pipe)?;
    let flags = a.str(2)?;
    let bits = match flags.as_str() {
        "r" => libc::S_IRUSR | libc::S_IRGRP | libc::S_IROTH,
        "w" => libc::S_IWUSR | libc::S_IWGRP | libc::S_IWOTH,
        "rw" | "wr" => {
            libc::S_IRUSR
                | libc::S_IRGRP
                | libc::S_IROTH
                | libc::S_IWUSR
                | libc::S_IWGRP
                | libc::S_IWOTH
        }
        _ => return Err(a.invalid(2, &format!("unknown chmod flags '{flags}'"))),
    };
    let path = {
        let mut st = core.st()?;
        let s = st.slots[h.id].stream();
        match s.sock.as_ref().map(|k| k.local_addr()) {
            Some(Ok(sa)) => sa.as_pathname().map(|p| p.to_path_buf()),
            Some(Err(e)) => return fail(lua, errno_of(&e)),
            None => return fail(lua, libc::EBADF),
        }
    };
    let Some(path) = path else {
        return fail(lua, libc::EINVAL);
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(&path) {
        Ok(m) => m.permissions().mode(),
        Err(e) => return fail(lua, errno_of(&e)),
    };
    match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | bits)) {
        Ok(()) => ok0(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

fn nonblock_flag(a: &Args, i: usize) -> LuaResult<bool> {
    match a.get(i) {
        LuaValue::Nil => Ok(false),
        LuaValue::Boolean(b) => Ok(*b),
        LuaValue::Table(t) => Ok(t.get::<Option<bool>>("nonblock")?.unwrap_or(false)),
        _ => Err(a.bad(i, "table or nil")),
    }
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on a descriptor just created by the caller.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// `pipe([read_flags], [write_flags])` → `{read = fd, write = fd}`.
pub fn pipe(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let rn = nonblock_flag(a, 1)?;
    let wn = nonblock_flag(a, 2)?;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return fail(lua, last_errno());
    }
    if rn {
        set_nonblock(fds[0]);
    }
    if wn {
        set_nonblock(fds[1]);
    }
    let t = lua.create_table_with_capacity(0, 2)?;
    t.set("read", fds[0])?;
    t.set("write", fds[1])?;
    t.into_lua_multi(lua)
}

/// `socketpair([socktype], [protocol], [flags1], [flags2])` → `{fd1, fd2}`.
pub fn socketpair(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let ty = match a.get(1) {
        LuaValue::Nil => libc::SOCK_STREAM,
        LuaValue::Integer(n) => *n as i32,
        LuaValue::String(s) => match s.to_str()?.as_ref() {
            "stream" => libc::SOCK_STREAM,
            "dgram" => libc::SOCK_DGRAM,
            "raw" => libc::SOCK_RAW,
            "seqpacket" => libc::SOCK_SEQPACKET,
            other => return Err(a.invalid(1, &format!("unknown socket type '{other}'"))),
        },
        _ => return Err(a.bad(1, "string or integer")),
    };
    let proto = match a.get(2) {
        LuaValue::Nil => 0,
        LuaValue::Integer(n) => *n as i32,
        LuaValue::String(_) => 0,
        _ => return Err(a.bad(2, "string or integer")),
    };
    let n1 = nonblock_flag(a, 3)?;
    let n2 = nonblock_flag(a, 4)?;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for socketpair to fill.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            ty | libc::SOCK_CLOEXEC,
            proto,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return fail(lua, last_errno());
    }
    if n1 {
        set_nonblock(fds[0]);
    }
    if n2 {
        set_nonblock(fds[1]);
    }
    let t = lua.create_table_with_capacity(2, 0)?;
    t.raw_set(1, fds[0])?;
    t.raw_set(2, fds[1])?;
    t.into_lua_multi(lua)
}

/// The pending descriptors an IPC pipe received and `accept` has not taken yet.
pub fn pipe_pending_count(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Pipe)?;
    let n = core.st()?.slots[h.id].stream().pending_fds.len();
    (n as i64).into_lua_multi(lua)
}

/// The type of the next pending descriptor ("tcp", "udp", "pipe"); nothing when none waits.
pub fn pipe_pending_type(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Pipe)?;
    let k = core.st()?.slots[h.id]
        .stream()
        .pending_fds
        .front()
        .map(|(_, k)| k.name());
    match k {
        Some(k) => k.into_lua_multi(lua),
        None => Ok(LuaMultiValue::new()),
    }
}

/// The kind of handle a received descriptor fits, as libuv guesses it.
pub fn kind_of_fd(fd: RawFd) -> Kind {
    // SAFETY: getsockname/getsockopt write into local, correctly sized buffers.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return Kind::Pipe;
        }
        let mut ty: libc::c_int = 0;
        let mut tl = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut tl,
        );
        match (ss.ss_family as i32, ty) {
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => Kind::Tcp,
            (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => Kind::Udp,
            _ => Kind::Pipe,
        }
    }
}
