//! DNS: `getaddrinfo` and `getnameinfo`. Without a callback they block; with one they run on a
//! thread and the loop keeps running: the thread posts its result and wakes the poller.

use crate::args::Args;
use crate::error::{describe, fail_with, ok0};
use crate::event_loop::{call, Core, State, DNS_TOKEN};
use mlua::prelude::*;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// One address from getaddrinfo, in plain Rust so it can cross threads.
struct Entry {
    addr: String,
    family: &'static str,
    port: u16,
    socktype: &'static str,
    protocol: Option<String>,
    canonname: Option<String>,
}

/// A finished lookup: entries, or a host and service, or an error (name, message).
enum Outcome {
    Addrs(Vec<Entry>),
    Name(String, String),
    /// `random` with a callback shares this machinery.
    Bytes(Vec<u8>),
    Error(&'static str, String),
}

/// Lookups in flight with a callback, and the channel their threads answer on.
#[derive(Default)]
pub struct Dns {
    waker: Option<Arc<mio::Waker>>,
    done: Arc<Mutex<Vec<(u64, Outcome)>>>,
    cbs: HashMap<u64, LuaFunction>,
    seq: u64,
}

/// glibc's values for two codes the libc crate leaves out.
const EAI_ADDRFAMILY: i32 = -9;
const EAI_NODATA: i32 = -5;

/// libuv's names and messages for getaddrinfo's error codes.
fn eai(code: i32) -> (&'static str, String) {
    let (n, m) = match code {
        EAI_ADDRFAMILY => ("EAI_ADDRFAMILY", "address family not supported"),
        libc::EAI_AGAIN => ("EAI_AGAIN", "temporary failure"),
        libc::EAI_BADFLAGS => ("EAI_BADFLAGS", "bad ai_flags value"),
        libc::EAI_FAIL => ("EAI_FAIL", "permanent failure"),
        libc::EAI_FAMILY => ("EAI_FAMILY", "ai_family not supported"),
        libc::EAI_MEMORY => ("EAI_MEMORY", "out of memory"),
        EAI_NODATA => ("EAI_NODATA", "no address"),
        libc::EAI_NONAME => ("EAI_NONAME", "unknown node or service"),
        libc::EAI_OVERFLOW => ("EAI_OVERFLOW", "argument buffer overflow"),
        libc::EAI_SERVICE => ("EAI_SERVICE", "service not available for socket type"),
        libc::EAI_SOCKTYPE => ("EAI_SOCKTYPE", "socket type not supported"),
        libc::EAI_SYSTEM => {
            return describe(crate::error::last_errno());
        }
        _ => ("EAI_FAIL", "permanent failure"),
    };
    (n, m.to_string())
}

fn family_name(f: i32) -> &'static str {
    match f {
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        libc::AF_UNIX => "unix",
        _ => "unspec",
    }
}

fn socktype_name(t: i32) -> &'static str {
    match t {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "dgram",
        libc::SOCK_RAW => "raw",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "unknown",
    }
}

/// Protocol names as /etc/protocols spells them; a fixed table because getprotobynumber is not
/// thread-safe and lookups run on threads.
fn protocol_name(p: i32) -> Option<String> {
    match p {
        0 => Some("ip".into()),
        libc::IPPROTO_TCP => Some("tcp".into()),
        libc::IPPROTO_UDP => Some("udp".into()),
        libc::IPPROTO_ICMP => Some("icmp".into()),
        libc::IPPROTO_ICMPV6 => Some("ipv6-icmp".into()),
        libc::IPPROTO_SCTP => Some("sctp".into()),
        _ => None,
    }
}

/// The request, parsed on the loop thread into thread-safe values.
struct Query {
    node: Option<CString>,
    service: Option<CString>,
    family: i32,
    socktype: i32,
    protocol: i32,
    flags: i32,
}

fn lookup(q: &Query) -> Outcome {
    // SAFETY: hints is a zeroed addrinfo with the fields set; node/service are NUL-terminated or
    // null; the result list is walked read-only and freed once.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_family = q.family;
        hints.ai_socktype = q.socktype;
        hints.ai_protocol = q.protocol;
        hints.ai_flags = q.flags;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        let r = libc::getaddrinfo(
            q.node.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            q.service.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            &hints,
            &mut res,
        );
        if r != 0 {
            let (n, m) = eai(r);
            return Outcome::Error(n, m);
        }
        let mut out = Vec::new();
        let mut p = res;
        while !p.is_null() {
            let ai = &*p;
            let sa = socket2::SockAddr::new(
                {
                    let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                    std::ptr::copy_nonoverlapping(
                        ai.ai_addr.cast::<u8>(),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        (ai.ai_addrlen as usize).min(std::mem::size_of::<libc::sockaddr_storage>()),
                    );
                    ss
                },
                ai.ai_addrlen,
            );
            if let Some(s) = sa.as_socket() {
                out.push(Entry {
                    addr: s.ip().to_string(),
                    family: family_name(ai.ai_family),
                    port: s.port(),
                    socktype: socktype_name(ai.ai_socktype),
                    protocol: protocol_name(ai.ai_protocol),
                    canonname: if ai.ai_canonname.is_null() {
                        None
                    } else {
                        Some(
                            CStr::from_ptr(ai.ai_canonname)
                                .to_string_lossy()
                                .into_owned(),
                        )
                    },
                });
            }
            p = ai.ai_next;
        }
        libc::freeaddrinfo(res);
        Outcome::Addrs(out)
    }
}

fn reverse(sa: SocketAddr) -> Outcome {
    let sa = socket2::SockAddr::from(sa);
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 32];
    // SAFETY: the address and both buffers are valid for the lengths passed.
    let r = unsafe {
        libc::getnameinfo(
            sa.as_ptr(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            0,
        )
    };
    if r != 0 {
        let (n, m) = eai(r);
        return Outcome::Error(n, m);
    }
    // SAFETY: getnameinfo wrote NUL-terminated strings into the buffers.
    let (h, s) = unsafe {
        (
            CStr::from_ptr(host.as_ptr()).to_string_lossy().into_owned(),
            CStr::from_ptr(serv.as_ptr()).to_string_lossy().into_owned(),
        )
    };
    Outcome::Name(h, s)
}

fn entries_table(lua: &Lua, v: &[Entry]) -> LuaResult<LuaTable> {
    let t = lua.create_table_with_capacity(v.len(), 0)?;
    for (i, e) in v.iter().enumerate() {
        let r = lua.create_table_with_capacity(0, 6)?;
        r.set("addr", e.addr.as_str())?;
        r.set("family", e.family)?;
        if e.port != 0 {
            r.set("port", e.port)?;
        }
        r.set("socktype", e.socktype)?;
        if let Some(p) = &e.protocol {
            r.set("protocol", p.as_str())?;
        }
        if let Some(c) = &e.canonname {
            r.set("canonname", c.as_str())?;
        }
        t.raw_set(i + 1, r)?;
    }
    Ok(t)
}

fn opt_cstring(a: &Args, i: usize) -> LuaResult<Option<CString>> {
    match a.get(i) {
        LuaValue::Nil => Ok(None),
        LuaValue::String(s) => Ok(Some(
            CString::new(s.as_bytes().to_vec())
                .map_err(|_| a.invalid(i, "string has a NUL byte"))?,
        )),
        LuaValue::Integer(n) => Ok(Some(CString::new(n.to_string()).expect("digits"))),
        LuaValue::Number(n) => Ok(Some(CString::new(n.to_string()).expect("digits"))),
        _ => Err(a.bad(i, "string or nil")),
    }
}

fn parse_query(a: &Args) -> LuaResult<Query> {
    let node = opt_cstring(a, 1)?;
    let service = opt_cstring(a, 2)?;
    let mut q = Query {
        node,
        service,
        family: libc::AF_UNSPEC,
        socktype: 0,
        protocol: 0,
        flags: 0,
    };
    let hints = match a.get(3) {
        LuaValue::Nil => return Ok(q),
        LuaValue::Table(t) => t.clone(),
        _ => return Err(a.bad(3, "table or nil")),
    };
    match hints.get::<LuaValue>("family")? {
        LuaValue::Nil => {}
        v => {
            let sub = a.sub(v);
            q.family = match crate::tcp::family(&sub, 1)? {
                Some(d) => libc::c_int::from(d),
                None => libc::AF_UNSPEC,
            };
        }
    }
    q.socktype = match hints.get::<LuaValue>("socktype")? {
        LuaValue::Nil => 0,
        LuaValue::Integer(n) => n as i32,
        LuaValue::String(s) => match s.to_str()?.as_ref() {
            "stream" => libc::SOCK_STREAM,
            "dgram" => libc::SOCK_DGRAM,
            "raw" => libc::SOCK_RAW,
            "seqpacket" => libc::SOCK_SEQPACKET,
            other => return Err(a.invalid(3, &format!("invalid socktype '{other}'"))),
        },
        _ => return Err(a.invalid(3, "socktype must be a string or integer")),
    };
    q.protocol = match hints.get::<LuaValue>("protocol")? {
        LuaValue::Nil => 0,
        LuaValue::Integer(n) => n as i32,
        LuaValue::String(s) => match s.to_str()?.as_ref() {
            "ip" => 0,
            "tcp" => libc::IPPROTO_TCP,
            "udp" => libc::IPPROTO_UDP,
            "icmp" => libc::IPPROTO_ICMP,
            "ipv6-icmp" => libc::IPPROTO_ICMPV6,
            "sctp" => libc::IPPROTO_SCTP,
            other => return Err(a.invalid(3, &format!("invalid protocol '{other}'"))),
        },
        _ => return Err(a.invalid(3, "protocol must be a string or integer")),
    };
    for (k, f) in [
        ("addrconfig", libc::AI_ADDRCONFIG),
        ("v4mapped", libc::AI_V4MAPPED),
        ("all", libc::AI_ALL),
        ("numerichost", libc::AI_NUMERICHOST),
        ("passive", libc::AI_PASSIVE),
        ("numericserv", libc::AI_NUMERICSERV),
        ("canonname", libc::AI_CANONNAME),
    ] {
        if hints.get::<Option<bool>>(k)?.unwrap_or(false) {
            q.flags |= f;
        }
    }
    Ok(q)
}

/// Starts `work` on a thread; its outcome reaches `cb` from the loop's I/O phase.
fn submit(
    lua: &Lua,
    core: &Rc<Core>,
    cb: LuaFunction,
    kind: &'static str,
    work: impl FnOnce() -> Outcome + Send + 'static,
) -> LuaResult<LuaMultiValue> {
    let (waker, done, id) = {
        let mut st = core.st()?;
        let State { poll, dns, .. } = &mut *st;
        if dns.waker.is_none() {
            let w = mio::Waker::new(poll.registry(), DNS_TOKEN)
                .map_err(|e| crate::error::misuse(format!("{kind}: cannot create a waker: {e}")))?;
            dns.waker = Some(Arc::new(w));
        }
        dns.seq += 1;
        let id = dns.seq;
        dns.cbs.insert(id, cb);
        st.alive_reqs += 1;
        (
            st.dns.waker.clone().expect("waker made"),
            st.dns.done.clone(),
            id,
        )
    };
    std::thread::spawn(move || {
        let out = work();
        if let Ok(mut d) = done.lock() {
            d.push((id, out));
        }
        let _ = waker.wake();
    });
    if kind == "random" {
        return Ok(LuaMultiValue::new());
    }
    crate::stream::req_object(core, kind)?.into_lua_multi(lua)
}

/// Delivers finished lookups to their callbacks.
pub fn dispatch(lua: &Lua, core: &Rc<Core>) -> LuaResult<()> {
    let finished = {
        let st = core.st()?;
        let mut d = st.dns.done.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *d)
    };
    for (id, out) in finished {
        let cb = {
            let mut st = core.st()?;
            st.alive_reqs -= 1;
            st.dns.cbs.remove(&id)
        };
        let Some(cb) = cb else { continue };
        match out {
            Outcome::Addrs(v) => call(core, &cb, (LuaValue::Nil, entries_table(lua, &v)?))?,
            Outcome::Name(h, s) => call(core, &cb, (LuaValue::Nil, h, s))?,
            Outcome::Bytes(b) => call(core, &cb, (LuaValue::Nil, lua.create_string(&b)?))?,
            Outcome::Error(n, _) => call(core, &cb, n)?,
        }
    }
    Ok(())
}

/// `random` with a callback: the bytes are read on a thread; the call returns 0 as luv's does.
pub fn submit_random(
    lua: &Lua,
    core: &Rc<Core>,
    cb: LuaFunction,
    len: usize,
) -> LuaResult<LuaMultiValue> {
    submit(
        lua,
        core,
        cb,
        "random",
        move || match crate::misc::random_bytes(len) {
            Ok(b) => Outcome::Bytes(b),
            Err(e) => {
                let (n, m) = describe(e);
                Outcome::Error(n, m)
            }
        },
    )?;
    ok0(lua)
}

pub fn getaddrinfo(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let q = parse_query(a)?;
    let cb = a.opt_func(4)?;
    if q.node.is_none() && q.service.is_none() {
        let (n, m) = eai(libc::EAI_NONAME);
        return fail_with(lua, n, &m);
    }
    match cb {
        Some(cb) => submit(lua, core, cb, "getaddrinfo", move || lookup(&q)),
        None => match lookup(&q) {
            Outcome::Addrs(v) => entries_table(lua, &v)?.into_lua_multi(lua),
            Outcome::Error(n, m) => fail_with(lua, n, &m),
            Outcome::Name(..) | Outcome::Bytes(_) => unreachable!("getaddrinfo gives addresses"),
        },
    }
}

pub fn getnameinfo(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let t = match a.get(1) {
        LuaValue::Table(t) => t.clone(),
        _ => return Err(a.bad(1, "table")),
    };
    let cb = a.opt_func(2)?;
    let ip: Option<String> = t.get("ip")?;
    let port: Option<i64> = t.get("port")?;
    let bad = || a.invalid(1, "Invalid ip address or port");
    let ip: IpAddr = match ip {
        Some(s) => s.parse().map_err(|_| bad())?,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    let port = u16::try_from(port.unwrap_or(0)).map_err(|_| bad())?;
    let sa = SocketAddr::new(ip, port);
    match cb {
        Some(cb) => submit(lua, core, cb, "getnameinfo", move || reverse(sa)),
        None => match reverse(sa) {
            Outcome::Name(h, s) => (h, s).into_lua_multi(lua),
            Outcome::Error(n, m) => fail_with(lua, n, &m),
            Outcome::Addrs(_) | Outcome::Bytes(_) => unreachable!("getnameinfo gives a name"),
        },
    }
}
