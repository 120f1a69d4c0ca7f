//! TTY handles: terminal streams with window size and mode control, and `guess_handle`.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, ok0};
use crate::event_loop::Core;
use crate::handle::{create, id_of, Data, HandleRef, Kind};
use crate::stream::{adopt, Stream};
use mlua::prelude::*;
use socket2::Socket;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Mutex;

/// The terminal settings from before the first `tty_set_mode`, for `tty_reset_mode`.
static ORIG: Mutex<Option<(RawFd, libc::termios)>> = Mutex::new(None);

fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty has no memory-safety preconditions.
    unsafe { libc::isatty(fd) == 1 }
}

/// Opens the terminal behind `fd` anew, so non-blocking mode does not leak to other processes
/// sharing the descriptor (as libuv does); falls back to `fd` itself.
fn reopen(fd: RawFd) -> (RawFd, bool) {
    let mut name = [0 as libc::c_char; 256];
    // SAFETY: name is a valid buffer of the length passed; open gets a NUL-terminated path.
    unsafe {
        if libc::ttyname_r(fd, name.as_mut_ptr(), name.len()) == 0 {
            let r = libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            );
            if r >= 0 {
                return (r, true);
            }
        }
    }
    (fd, false)
}

pub fn new_tty(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let fd = a.int(1)?;
    let fd = i32::try_from(fd).map_err(|_| a.invalid(1, "invalid file descriptor"))?;
    let readable = match a.get(2) {
        LuaValue::Boolean(b) => *b,
        LuaValue::Nil => false,
        _ => return Err(a.bad(2, "boolean")),
    };
    let ty = guess(fd);
    if matches!(ty, None | Some("file")) {
        return fail(lua, libc::EINVAL);
    }
    let (use_fd, reopened) = if ty == Some("tty") {
        reopen(fd)
    } else {
        (fd, false)
    };
    // SAFETY: F_GETFL/F_SETFL on an open descriptor.
    let acc = unsafe {
        let fl = libc::fcntl(use_fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(use_fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            let e = last_errno();
            if reopened {
                libc::close(use_fd);
            }
            return fail(lua, e);
        }
        fl & libc::O_ACCMODE
    };
    // As libuv: what the descriptor's access mode allows, whatever `readable` says.
    let _ = readable;
    let s = Stream {
        not_sock: !crate::pipe::is_socket(use_fd),
        readable: acc != libc::O_WRONLY,
        writable: acc != libc::O_RDONLY,
        ..Default::default()
    };
    let ud = create(lua, core, Kind::Tty, Data::Stream(Box::new(s)))?;
    let id = id_of(&ud)?;
    // SAFETY: the descriptor is handed to the handle (stdio numbers are never closed by it).
    let sock = unsafe { Socket::from_raw_fd(use_fd) };
    let r = adopt(&mut *core.st()?, id, sock);
    if let Err(e) = r {
        // Not pollable: the handle keeps it anyway, as libuv falls back to blocking I/O.
        if e.raw_os_error() != Some(libc::EPERM) {
            return fail(lua, errno_of(&e));
        }
    }
    ud.into_lua_multi(lua)
}

fn tty_fd(core: &Rc<Core>, h: &HandleRef) -> LuaResult<Option<RawFd>> {
    let mut st = core.st()?;
    Ok(st.slots[h.id].stream().fd())
}

pub fn tty_get_winsize(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Tty)?;
    let Some(fd) = tty_fd(core, &h)? else {
        return fail(lua, libc::EBADF);
    };
    // SAFETY: an all-zero winsize is valid; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; ws is valid for writes.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return fail(lua, last_errno());
    }
    (ws.ws_col as i64, ws.ws_row as i64).into_lua_multi(lua)
}

pub fn tty_set_mode(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Tty)?;
    let mode = match a.get(2) {
        LuaValue::Integer(n) if (0..=2).contains(n) => *n,
        LuaValue::String(s) => match s.to_str()?.as_ref() {
            "normal" => 0,
            "raw" => 1,
            "io" => 2,
            other => return Err(a.invalid(2, &format!("invalid tty mode '{other}'"))),
        },
        _ => return Err(a.bad(2, "tty mode")),
    };
    let Some(fd) = tty_fd(core, &h)? else {
        return fail(lua, libc::EBADF);
    };
    // SAFETY: an all-zero termios is valid; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; t is valid for writes.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return fail(lua, last_errno());
    }
    let orig = {
        let mut g = ORIG.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some((fd, t));
        }
        g.map(|(_, o)| o).unwrap_or(t)
    };
    let mut n = orig;
    match mode {
        0 => {}
        1 => {
            n.c_iflag &= !(libc::BRKINT | libc::ICRNL | libc::INPCK | libc::ISTRIP | libc::IXON);
            n.c_oflag |= libc::ONLCR;
            n.c_cflag |= libc::CS8;
            n.c_lflag &= !(libc::ECHO | libc::ICANON | libc::IEXTEN | libc::ISIG);
            n.c_cc[libc::VMIN] = 1;
            n.c_cc[libc::VTIME] = 0;
        }
        _ => {
            // SAFETY: cfmakeraw edits the struct in place.
            unsafe { libc::cfmakeraw(&mut n) };
        }
    }
    // SAFETY: fd is open; n is a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, &n) } != 0 {
        return fail(lua, last_errno());
    }
    ok0(lua)
}

pub fn tty_reset_mode(lua: &Lua, _core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    let saved = *ORIG.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((fd, t)) = saved {
        // SAFETY: t is the termios read from this descriptor earlier.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
            return fail(lua, last_errno());
        }
    }
    ok0(lua)
}

pub fn tty_set_vterm_state(_lua: &Lua, _core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    // Windows only in libuv.
    Ok(LuaMultiValue::new())
}

/// libuv's guess: "tty", "file", "pipe", "tcp", "udp", or None when unknown.
fn guess(fd: RawFd) -> Option<&'static str> {
    if fd < 0 {
        return None;
    }
    if is_tty(fd) {
        return Some("tty");
    }
    // SAFETY: fstat writes into a zeroed stat struct.
    let mut sb: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut sb) } != 0 {
        return None;
    }
    match sb.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFCHR => Some("file"),
        libc::S_IFIFO => Some("pipe"),
        libc::S_IFSOCK => Some(match crate::pipe::kind_of_fd(fd) {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            _ => "pipe",
        }),
        _ => None,
    }
}

pub fn guess_handle(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let fd = a.int(1)?;
    let fd = i32::try_from(fd).map_err(|_| a.invalid(1, "invalid file descriptor"))?;
    match guess(fd) {
        Some(t) => t.into_lua_multi(lua),
        None => Ok(LuaMultiValue::new()),
    }
}
