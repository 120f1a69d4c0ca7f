//! Process and system information: the misc functions real programs need.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, ok0};
use crate::event_loop::Core;
use mlua::prelude::*;
use std::ffi::CStr;
use std::rc::Rc;

type Ret = LuaResult<LuaMultiValue>;

/// The libuv release whose API luvrs follows.
pub const UV_VERSION: (u32, u32, u32) = (1, 44, 2);

fn last_err(lua: &Lua) -> Ret {
    fail(lua, last_errno())
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
        Ok(()) => ok0(lua),
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

/// The CPUs as libuv sees them: `{model, speed (MHz), times = {user, nice, sys, idle, irq}}`,
/// times in milliseconds.
pub fn cpu_info(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut models = Vec::new();
    let mut speeds = Vec::new();
    for line in cpuinfo.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k.trim() {
            "model name" => models.push(v.trim().to_string()),
            "cpu MHz" => speeds.push(v.trim().parse::<f64>().map(f64::trunc).unwrap_or(0.0)),
            _ => {}
        }
    }
    let stat = match std::fs::read_to_string("/proc/stat") {
        Ok(s) => s,
        Err(e) => return fail(lua, errno_of(&e)),
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ms = 1000.0 / hz;
    let t = lua.create_table()?;
    let mut i = 0;
    for line in stat.lines() {
        let mut it = line.split_whitespace();
        let Some(name) = it.next() else { continue };
        if !name.starts_with("cpu") || name == "cpu" {
            continue;
        }
        let v: Vec<f64> = it.map(|x| x.parse().unwrap_or(0.0)).collect();
        let get = |k: usize| v.get(k).copied().unwrap_or(0.0) * ms;
        let times = lua.create_table()?;
        times.set("user", get(0))?;
        times.set("nice", get(1))?;
        times.set("sys", get(2))?;
        times.set("idle", get(3))?;
        times.set("irq", get(5))?;
        let cpu = lua.create_table()?;
        cpu.set(
            "model",
            models
                .get(i)
                .or(models.first())
                .cloned()
                .unwrap_or_else(|| "unknown".into()),
        )?;
        cpu.set(
            "speed",
            speeds.get(i).or(speeds.first()).copied().unwrap_or(0.0),
        )?;
        cpu.set("times", times)?;
        i += 1;
        t.raw_set(i, cpu)?;
    }
    t.into_lua_multi(lua)
}

fn ip_of(sa: *const libc::sockaddr) -> Option<std::net::IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: getifaddrs gives sockaddrs whose family says which struct they are.
    unsafe {
        match (*sa).sa_family as i32 {
            libc::AF_INET => {
                let a = &*(sa as *const libc::sockaddr_in);
                Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                    u32::from_be(a.sin_addr.s_addr),
                )))
            }
            libc::AF_INET6 => {
                let a = &*(sa as *const libc::sockaddr_in6);
                Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                    a.sin6_addr.s6_addr,
                )))
            }
            _ => None,
        }
    }
}

/// `{name = {{ip, family, netmask, internal, mac}, ...}}` for interfaces that are up and running.
pub fn interface_addresses(lua: &Lua, _c: &Rc<Core>, _a: &Args) -> Ret {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return last_err(lua);
    }
    let mut macs: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let mut addrs: Vec<(String, std::net::IpAddr, Option<std::net::IpAddr>, bool)> = Vec::new();
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p walks the list getifaddrs returned; names are NUL-terminated.
        let ent = unsafe { &*p };
        p = ent.ifa_next;
        let up = libc::IFF_UP as u32 | libc::IFF_RUNNING as u32;
        if ent.ifa_flags & up != up || ent.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr(ent.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null here.
        let fam = unsafe { (*ent.ifa_addr).sa_family } as i32;
        if fam == libc::AF_PACKET {
            // SAFETY: an AF_PACKET address is a sockaddr_ll.
            let ll = unsafe { &*(ent.ifa_addr as *const libc::sockaddr_ll) };
            let n = (ll.sll_halen as usize).min(8);
            let mut mac = ll.sll_addr[..n].to_vec();
            mac.resize(6, 0);
            macs.insert(name, mac);
            continue;
        }
        if let Some(ip) = ip_of(ent.ifa_addr) {
            let internal = ent.ifa_flags & libc::IFF_LOOPBACK as u32 != 0;
            addrs.push((name, ip, ip_of(ent.ifa_netmask), internal));
        }
    }
    // SAFETY: freeing the list once, after the last use.
    unsafe { libc::freeifaddrs(head) };
    let t = lua.create_table()?;
    for (name, ip, mask, internal) in addrs {
        let list: LuaTable = match t.raw_get::<Option<LuaTable>>(name.as_str())? {
            Some(l) => l,
            None => {
                let l = lua.create_table()?;
                t.raw_set(name.as_str(), &l)?;
                l
            }
        };
        let e = lua.create_table()?;
        e.set("ip", ip.to_string())?;
        e.set("family", if ip.is_ipv4() { "inet" } else { "inet6" })?;
        if let Some(m) = mask {
            e.set("netmask", m.to_string())?;
        }
        e.set("internal", internal)?;
        let mac = macs.get(&name).cloned().unwrap_or_else(|| vec![0; 6]);
        e.set("mac", lua.create_string(&mac)?)?;
        list.raw_set(list.raw_len() + 1, e)?;
    }
    t.into_lua_multi(lua)
}

/// `len` bytes from the kernel's CSPRNG.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        // SAFETY: the slice from `filled` is valid for writes of the length passed.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), len - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(errno_of(&e));
        }
        filled += n as usize;
    }
    Ok(buf)
}

/// `random(len, flags [, cb])`: bytes now, or through `cb(err, bytes)` from a thread.
pub fn random(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let len = a.int(1)?;
    match a.get(2) {
        LuaValue::Nil | LuaValue::Table(_) | LuaValue::Integer(_) => {}
        _ => return Err(a.bad(2, "table or nil")),
    }
    let cb = a.opt_func(3)?;
    if !(0..=0x7FFF_FFFF).contains(&len) {
        return fail(lua, libc::E2BIG);
    }
    let len = len as usize;
    match cb {
        Some(cb) => crate::dns::submit_random(lua, core, cb, len),
        None => match random_bytes(len) {
            Ok(b) => lua.create_string(&b)?.into_lua_multi(lua),
            Err(e) => fail(lua, e),
        },
    }
}
