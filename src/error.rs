//! libuv's error names and messages, and the two ways luvrs reports trouble: a runtime failure returns
//! `nil, "ECODE: message", "ECODE"`; misuse raises a Lua error naming the function and the argument.

use mlua::prelude::*;
use std::io;

/// An OS error number (positive errno) or one of libuv's own codes below.
pub type Errno = i32;

/// libuv's own "end of file" code; it has no errno.
pub const UV_EOF: Errno = -4095;

/// libuv's name and message for the codes it knows.
fn known(code: Errno) -> Option<(&'static str, &'static str)> {
    use libc::*;
    match code {
        UV_EOF => Some(("EOF", "end of file")),
        E2BIG => Some(("E2BIG", "argument list too long")),
        EACCES => Some(("EACCES", "permission denied")),
        EADDRINUSE => Some(("EADDRINUSE", "address already in use")),
        EADDRNOTAVAIL => Some(("EADDRNOTAVAIL", "address not available")),
        EAFNOSUPPORT => Some(("EAFNOSUPPORT", "address family not supported")),
        EAGAIN => Some(("EAGAIN", "resource temporarily unavailable")),
        EALREADY => Some(("EALREADY", "connection already in progress")),
        EBADF => Some(("EBADF", "bad file descriptor")),
        EBUSY => Some(("EBUSY", "resource busy or locked")),
        ECANCELED => Some(("ECANCELED", "operation canceled")),
        ECHILD => Some(("ECHILD", "no child processes")),
        ECONNABORTED => Some(("ECONNABORTED", "software caused connection abort")),
        ECONNREFUSED => Some(("ECONNREFUSED", "connection refused")),
        ECONNRESET => Some(("ECONNRESET", "connection reset by peer")),
        EDESTADDRREQ => Some(("EDESTADDRREQ", "destination address required")),
        EEXIST => Some(("EEXIST", "file already exists")),
        EFAULT => Some(("EFAULT", "bad address in system call argument")),
        EFBIG => Some(("EFBIG", "file too large")),
        EHOSTUNREACH => Some(("EHOSTUNREACH", "host is unreachable")),
        EINTR => Some(("EINTR", "interrupted system call")),
        EINVAL => Some(("EINVAL", "invalid argument")),
        EIO => Some(("EIO", "i/o error")),
        EISCONN => Some(("EISCONN", "socket is already connected")),
        EISDIR => Some(("EISDIR", "illegal operation on a directory")),
        ELOOP => Some(("ELOOP", "too many symbolic links encountered")),
        EMFILE => Some(("EMFILE", "too many open files")),
        EMSGSIZE => Some(("EMSGSIZE", "message too long")),
        ENAMETOOLONG => Some(("ENAMETOOLONG", "name too long")),
        ENETDOWN => Some(("ENETDOWN", "network is down")),
        ENETUNREACH => Some(("ENETUNREACH", "network is unreachable")),
        ENFILE => Some(("ENFILE", "file table overflow")),
        ENOBUFS => Some(("ENOBUFS", "no buffer space available")),
        ENODEV => Some(("ENODEV", "no such device")),
        ENOENT => Some(("ENOENT", "no such file or directory")),
        ENOMEM => Some(("ENOMEM", "not enough memory")),
        ENOSPC => Some(("ENOSPC", "no space left on device")),
        ENOSYS => Some(("ENOSYS", "function not implemented")),
        ENOTCONN => Some(("ENOTCONN", "socket is not connected")),
        ENOTDIR => Some(("ENOTDIR", "not a directory")),
        ENOTEMPTY => Some(("ENOTEMPTY", "directory not empty")),
        ENOTSOCK => Some(("ENOTSOCK", "socket operation on non-socket")),
        ENOTSUP => Some(("ENOTSUP", "operation not supported on socket")),
        ENOTTY => Some(("ENOTTY", "inappropriate ioctl for device")),
        ENXIO => Some(("ENXIO", "no such device or address")),
        EPERM => Some(("EPERM", "operation not permitted")),
        EPIPE => Some(("EPIPE", "broken pipe")),
        EPROTO => Some(("EPROTO", "protocol error")),
        EPROTONOSUPPORT => Some(("EPROTONOSUPPORT", "protocol not supported")),
        EPROTOTYPE => Some(("EPROTOTYPE", "protocol wrong type for socket")),
        ERANGE => Some(("ERANGE", "result too large")),
        EROFS => Some(("EROFS", "read-only file system")),
        ESHUTDOWN => Some(("ESHUTDOWN", "cannot send after transport endpoint shutdown")),
        ESPIPE => Some(("ESPIPE", "invalid seek")),
        ESRCH => Some(("ESRCH", "no such process")),
        ETIMEDOUT => Some(("ETIMEDOUT", "connection timed out")),
        ETXTBSY => Some(("ETXTBSY", "text file is busy")),
        EXDEV => Some(("EXDEV", "cross-device link not permitted")),
        _ => None,
    }
}

/// libuv's name and message for an error code; unknown codes fall back to the OS's text.
pub fn describe(code: Errno) -> (&'static str, String) {
    match known(code) {
        Some((name, msg)) => (name, msg.to_string()),
        None if code > 0 => ("UNKNOWN", io::Error::from_raw_os_error(code).to_string()),
        None => ("UNKNOWN", format!("unknown error {code}")),
    }
}

/// The error name a callback receives, e.g. `"ECONNRESET"`.
pub fn name(code: Errno) -> &'static str {
    known(code).map_or("UNKNOWN", |(name, _)| name)
}

/// The errno behind an I/O error (EIO when the error carries none).
pub fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The errno the last failed OS call left.
pub fn last_errno() -> Errno {
    errno_of(&io::Error::last_os_error())
}

/// luv's success value for operations: `0` (the other half of `fail`).
pub fn ok0(lua: &Lua) -> LuaResult<LuaMultiValue> {
    0.into_lua_multi(lua)
}

/// The failure triple `nil, "ECODE: message", "ECODE"`.
pub fn fail(lua: &Lua, code: Errno) -> LuaResult<LuaMultiValue> {
    let (n, msg) = describe(code);
    fail_with(lua, n, &msg)
}

/// A failure triple with a name and message of the caller's choosing (DNS errors, for example).
pub fn fail_with(lua: &Lua, name: &str, msg: &str) -> LuaResult<LuaMultiValue> {
    Ok(LuaMultiValue::from_vec(vec![
        LuaValue::Nil,
        LuaValue::String(lua.create_string(format!("{name}: {msg}"))?),
        LuaValue::String(lua.create_string(name)?),
    ]))
}

/// A misuse error: raised in Lua as a plain string (see `lib.rs`, which turns it into `error(msg)`).
pub fn misuse(msg: impl Into<String>) -> LuaError {
    LuaError::RuntimeError(msg.into())
}

/// The text of a Lua error as Lua code would see it, without mlua's "runtime error: " decoration.
pub fn lua_text(e: &LuaError) -> String {
    match e {
        LuaError::RuntimeError(m) => m.clone(),
        LuaError::CallbackError { cause, traceback } => {
            let inner = lua_text(cause);
            if inner.contains("stack traceback:") {
                inner
            } else {
                format!("{inner}\n{traceback}")
            }
        }
        LuaError::WithContext { cause, .. } => lua_text(cause),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages_follow_libuv() {
        assert_eq!(
            describe(libc::EADDRINUSE),
            ("EADDRINUSE", "address already in use".to_string())
        );
        assert_eq!(describe(libc::ECONNRESET).0, "ECONNRESET");
        assert_eq!(describe(UV_EOF), ("EOF", "end of file".to_string()));
        assert_eq!(describe(9999).0, "UNKNOWN");
    }

    #[test]
    fn lua_text_strips_decoration() {
        assert_eq!(
            lua_text(&misuse("bad argument #1 to 'x'")),
            "bad argument #1 to 'x'"
        );
    }
}
