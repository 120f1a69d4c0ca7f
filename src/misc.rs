//! Process and system information: the misc functions real programs need.

use crate::args::Args;
use crate::error::{errno_of, fail};
use crate::event_loop::Core;
use mlua::prelude::*;
use std::ffi::CStr;
use std::rc::Rc;

type Ret = LuaResult<LuaMultiValue>;

/// The libuv release whose API luvrs follows.
pub const UV_VERSION: (u32, u32, u32) = (1, 44, 2);

fn last_err(lua: &Lua) -> Ret {
    fail(lua, errno_of(&std::io::Error::last_os_error()))
}

pub fn version(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let (a, b, c) = UV_VERSION;
    ((a << 16 | b << 8 | c) as i64).into_lua_multi(lua)
}

pub fn version_string(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let (a, b, c) = UV_VERSION;
    format!("{a}.{b}.{c}").into_lua_multi(lua)
}

pub fn cwd(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    match std::env::current_dir() {
        Ok(p) => lua
            .create_string(p.as_os_str().as_encoded_bytes())?
            .into_lua_multi(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

pub fn chdir(lua: &Lua, _c: &Rc<Core>, a: &Args) -> Ret {
    let p = a.str(1)?;
    match std::env::set_current_dir(&p) {
        Ok(()) => 0.into_lua_multi(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

pub fn os_getpid(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    (std::process::id() as i64).into_lua_multi(lua)
}

pub fn os_getppid(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    // SAFETY: getppid has no preconditions.
    (unsafe { libc::getppid() } as i64).into_lua_multi(lua)
}

pub fn getuid(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    // SAFETY: getuid has no preconditions.
    (unsafe { libc::getuid() } as i64).into_lua_multi(lua)
}

pub fn getgid(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    // SAFETY: getgid has no preconditions.
    (unsafe { libc::getgid() } as i64).into_lua_multi(lua)
}

pub fn os_gethostname(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return last_err(lua);
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    lua.create_string(&buf[..n])?.into_lua_multi(lua)
}

fn field(f: &[libc::c_char]) -> String {
    // SAFETY: utsname fields are NUL-terminated within their arrays.
    unsafe { CStr::from_ptr(f.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub fn os_uname(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    // SAFETY: a zeroed utsname is valid; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is valid for writes.
    if unsafe { libc::uname(&mut u) } != 0 {
        return last_err(lua);
    }
    let t = lua.create_table()?;
    t.set("sysname", field(&u.sysname))?;
    t.set("release", field(&u.release))?;
    t.set("version", field(&u.version))?;
    t.set("machine", field(&u.machine))?;
    t.into_lua_multi(lua)
}

pub fn os_getenv(lua: &Lua, _c: &Rc<Core>, a: &Args) -> Ret {
    let name = a.str(1)?;
    // luv's optional size is the buffer size, terminating NUL included.
    let size = a.opt_int(2, i64::MAX)?;
    match std::env::var_os(&name) {
        Some(v) if (v.len() as i64) >= size => fail(lua, libc::ENOBUFS),
        Some(v) => lua.create_string(v.as_encoded_bytes())?.into_lua_multi(lua),
        None => fail(lua, libc::ENOENT),
    }
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('=') && !s.contains('\0')
}

pub fn os_setenv(lua: &Lua, _c: &Rc<Core>, a: &Args) -> Ret {
    let name = a.str(1)?;
    let value = a.str(2)?;
    if !valid_env_name(&name) || value.contains('\0') {
        return fail(lua, libc::EINVAL);
    }
    // SAFETY: luvrs runs its loop on one thread; like uv_os_setenv, this is the caller's contract.
    unsafe { std::env::set_var(&name, &value) };
    true.into_lua_multi(lua)
}

pub fn os_unsetenv(lua: &Lua, _c: &Rc<Core>, a: &Args) -> Ret {
    let name = a.str(1)?;
    if !valid_env_name(&name) {
        return fail(lua, libc::EINVAL);
    }
    // SAFETY: as for os_setenv.
    unsafe { std::env::remove_var(&name) };
    true.into_lua_multi(lua)
}

pub fn os_environ(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let t = lua.create_table()?;
    for (k, v) in std::env::vars_os() {
        t.set(
            lua.create_string(k.as_encoded_bytes())?,
            lua.create_string(v.as_encoded_bytes())?,
        )?;
    }
    t.into_lua_multi(lua)
}

pub fn os_homedir(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return lua.create_string(h.as_encoded_bytes())?.into_lua_multi(lua);
    }
    // SAFETY: getpwuid returns a pointer to static storage or null; read before any other call.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return fail(lua, libc::ENOENT);
        }
        lua.create_string(CStr::from_ptr((*pw).pw_dir).to_bytes())?
            .into_lua_multi(lua)
    }
}

pub fn os_tmpdir(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    for k in ["TMPDIR", "TMP", "TEMP", "TEMPDIR"] {
        if let Some(v) = std::env::var(k).ok().filter(|v| !v.is_empty()) {
            let v = if v.len() > 1 {
                v.trim_end_matches('/').to_string()
            } else {
                v
            };
            return v.into_lua_multi(lua);
        }
    }
    "/tmp".into_lua_multi(lua)
}

fn timeval(lua: &Lua, tv: libc::timeval) -> LuaResult<LuaTable> {
    let t = lua.create_table()?;
    t.set("sec", tv.tv_sec)?;
    t.set("usec", tv.tv_usec)?;
    Ok(t)
}

pub fn getrusage(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: r is valid for writes.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) } != 0 {
        return last_err(lua);
    }
    let t = lua.create_table()?;
    t.set("utime", timeval(lua, r.ru_utime)?)?;
    t.set("stime", timeval(lua, r.ru_stime)?)?;
    for (k, v) in [
        ("maxrss", r.ru_maxrss),
        ("ixrss", r.ru_ixrss),
        ("idrss", r.ru_idrss),
        ("isrss", r.ru_isrss),
        ("minflt", r.ru_minflt),
        ("majflt", r.ru_majflt),
        ("nswap", r.ru_nswap),
        ("inblock", r.ru_inblock),
        ("oublock", r.ru_oublock),
        ("msgsnd", r.ru_msgsnd),
        ("msgrcv", r.ru_msgrcv),
        ("nsignals", r.ru_nsignals),
        ("nvcsw", r.ru_nvcsw),
        ("nivcsw", r.ru_nivcsw),
    ] {
        t.set(k, v)?;
    }
    t.into_lua_multi(lua)
}

pub fn resident_set_memory(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let statm = std::fs::read_to_string("/proc/self/statm");
    let pages = statm.ok().and_then(|s| {
        s.split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i64>().ok())
    });
    match pages {
        // SAFETY: sysconf has no preconditions.
        Some(p) => (p * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).into_lua_multi(lua),
        None => fail(lua, libc::EIO),
    }
}

pub fn available_parallelism(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    (std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as i64)
        .into_lua_multi(lua)
}

pub fn uptime(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let s = std::fs::read_to_string("/proc/uptime").ok();
    match s.and_then(|s| {
        s.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    }) {
        Some(v) => v.into_lua_multi(lua),
        None => fail(lua, libc::EIO),
    }
}

pub fn sleep(_lua: &Lua, _c: &Rc<Core>, a: &Args) -> Ret {
    let ms = a.uint(1)?;
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Ok(LuaMultiValue::new())
}

pub fn gettimeofday(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_micros() as i64).into_lua_multi(lua)
}

pub fn exepath(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    match std::env::current_exe() {
        Ok(p) => lua
            .create_string(p.as_os_str().as_encoded_bytes())?
            .into_lua_multi(lua),
        Err(e) => fail(lua, errno_of(&e)),
    }
}

fn meminfo(key: &str) -> Option<i64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<i64>()
        .ok()
        .map(|kb| kb * 1024)
}

pub fn get_total_memory(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    meminfo("MemTotal:").unwrap_or(0).into_lua_multi(lua)
}

pub fn get_free_memory(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    meminfo("MemAvailable:")
        .or_else(|| meminfo("MemFree:"))
        .unwrap_or(0)
        .into_lua_multi(lua)
}

pub fn loadavg(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let mut v = [0f64; 3];
    // SAFETY: v has room for the 3 values asked for.
    unsafe { libc::getloadavg(v.as_mut_ptr(), 3) };
    (v[0], v[1], v[2]).into_lua_multi(lua)
}
