//! Extension: the native HTTP/1.x request-head parser behind Luvicorn's `--http native`.
//!
//! It follows, byte for byte, the contract written at the top of lua/luvicorn/parsers/lua.lua
//! (the pure-Lua parser); a differential spec feeds both the same inputs.

use crate::args::Args;
use crate::event_loop::Core;
use mlua::ffi;
use mlua::prelude::*;
use std::os::raw::c_int;
use std::rc::Rc;

/// What a complete, valid head holds; ranges index into the parsed buffer.
#[derive(Debug, PartialEq)]
pub struct Head {
    /// 1-based index of the head's last byte (Lua's `consumed`).
    pub consumed: usize,
    pub method: (usize, usize),
    pub target: (usize, usize),
    pub minor: u8,
    /// (name range, value range); names still need lower-casing.
    pub headers: Vec<((usize, usize), (usize, usize))>,
}

#[derive(Debug, PartialEq)]
pub enum Parsed {
    Incomplete,
    Done(Head),
    Reject(u16, &'static str),
}

/// Byte classes, one bit each, looked up once per byte (the parser's inner loops).
const TCHAR: u8 = 1;
const TARGET: u8 = 2;
const VALUE: u8 = 4;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut k = 0;
        if b.is_ascii_alphanumeric() {
            k |= TCHAR;
        }
        let mut i = 0;
        let extra = b"!#$%&'*+-.^_`|~";
        while i < extra.len() {
            if extra[i] == b {
                k |= TCHAR;
            }
            i += 1;
        }
        if (b >= 0x21 && b <= 0x7e) || b >= 0x80 {
            k |= TARGET;
        }
        if b == b'\t' || (b >= 0x20 && b <= 0x7e) || b >= 0x80 {
            k |= VALUE;
        }
        t[c] = k;
        c += 1;
    }
    t
};

fn is_tchar(c: u8) -> bool {
    CLASSES[c as usize] & TCHAR != 0
}

fn is_target(c: u8) -> bool {
    CLASSES[c as usize] & TARGET != 0
}

fn is_value(c: u8) -> bool {
    CLASSES[c as usize] & VALUE != 0
}

fn is_ctl(c: u8) -> bool {
    c <= 0x08 || c == 0x0b || c == 0x0c || (0x0e..=0x1f).contains(&c) || c == 0x7f
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    if from > b.len() {
        return None;
    }
    b[from..]
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

/// The first CRLFCRLF at or after `from`: tests the last byte first, so most positions cost one
/// comparison.
fn find_head_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from + 3;
    while i < b.len() {
        if b[i] == b'\n' {
            if b[i - 1] == b'\r' && b[i - 2] == b'\n' && b[i - 3] == b'\r' {
                return Some(i - 3);
            }
            i += 2; // one ending at i + 1 would need b[i] to be CR
        } else {
            i += 1;
        }
    }
    None
}

fn too_large(b: &[u8], s: usize, max_head: usize) -> Parsed {
    // Indices here are 0-based; the contract's `r + 1 > max_head` compares the 1-based index of
    // the LF of the first CRLF.
    match find(b, s, b"\r\n") {
        Some(r) if r + 2 <= max_head => Parsed::Reject(431, "Request head too large"),
        _ => Parsed::Reject(414, "Request line too long"),
    }
}

/// A request line: method and target ranges, minor version, and where the header lines start.
type RequestLine = ((usize, usize), (usize, usize), u8, usize);

/// Parses the request line of `h` (which ends with CRLF).
fn request_line(h: &[u8], base: usize) -> Result<RequestLine, Parsed> {
    let bad = Parsed::Reject(400, "Invalid request line");
    let mut i = 0;
    while i < h.len() && is_tchar(h[i]) {
        i += 1;
    }
    if i == 0 || h.get(i) != Some(&b' ') {
        return Err(bad);
    }
    let method = (base, base + i);
    i += 1;
    let t0 = i;
    while i < h.len() && is_target(h[i]) {
        i += 1;
    }
    if i == t0 || h.get(i) != Some(&b' ') {
        return Err(bad);
    }
    let target = (base + t0, base + i);
    i += 1;
    if !h[i..].starts_with(b"HTTP/") {
        return Err(bad);
    }
    i += 5;
    let digits = |i: &mut usize| {
        let d0 = *i;
        while *i < h.len() && h[*i].is_ascii_digit() {
            *i += 1;
        }
        (d0, *i)
    };
    let major = digits(&mut i);
    if major.0 == major.1 || h.get(i) != Some(&b'.') {
        return Err(bad);
    }
    i += 1;
    let minor = digits(&mut i);
    if minor.0 == minor.1 || !h[i..].starts_with(b"\r\n") {
        return Err(bad);
    }
    let single = major.1 - major.0 == 1 && minor.1 - minor.0 == 1;
    if !single || h[major.0] != b'1' || (h[minor.0] != b'0' && h[minor.0] != b'1') {
        return Err(Parsed::Reject(505, "Unsupported HTTP version"));
    }
    Ok((method, target, h[minor.0] - b'0', i + 2))
}

/// Parses a request head per the contract.
pub fn parse(b: &[u8], max_head: usize, max_headers: usize) -> Parsed {
    let mut s = 0;
    while b.len() >= s + 2 && b[s] == b'\r' && b[s + 1] == b'\n' {
        s += 2;
    }
    let Some(e) = find_head_end(b, s) else {
        let rest = &b[s..];
        if rest.iter().any(|&c| is_ctl(c)) {
            return Parsed::Reject(400, "Invalid character in request head");
        }
        if rest.first() == Some(&b'\n') || rest.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') {
            return Parsed::Reject(400, "Invalid line ending in request head");
        }
        if b.len() > max_head {
            return too_large(b, s, max_head);
        }
        return Parsed::Incomplete;
    };
    // 1-based: the head ends at e + 4.
    if e + 4 > max_head {
        return too_large(b, s, max_head);
    }
    let h = &b[s..e + 2];
    let (method, target, minor, mut pos) = match request_line(h, s) {
        Ok(v) => v,
        Err(p) => return p,
    };
    let mut headers = Vec::new();
    while pos < h.len() {
        let n0 = pos;
        let mut i = pos;
        while i < h.len() && is_tchar(h[i]) {
            i += 1;
        }
        if i == n0 || h.get(i) != Some(&b':') {
            return if h[pos] == b' ' || h[pos] == b'\t' {
                Parsed::Reject(400, "Obsolete line folding in header")
            } else {
                Parsed::Reject(400, "Invalid header line")
            };
        }
        let name = (s + n0, s + i);
        i += 1;
        while i < h.len() && (h[i] == b' ' || h[i] == b'\t') {
            i += 1;
        }
        let v0 = i;
        while i < h.len() && is_value(h[i]) {
            i += 1;
        }
        // The line starts with a name here, so it cannot be a folded one.
        if !h[i..].starts_with(b"\r\n") {
            return Parsed::Reject(400, "Invalid header line");
        }
        let mut v1 = i;
        while v1 > v0 && (h[v1 - 1] == b' ' || h[v1 - 1] == b'\t') {
            v1 -= 1;
        }
        if headers.len() == max_headers {
            return Parsed::Reject(431, "Too many headers");
        }
        headers.push((name, (s + v0, s + v1)));
        pos = i + 2;
    }
    Parsed::Done(Head {
        consumed: e + 4,
        method,
        target,
        minor,
        headers,
    })
}

/// A piece of the request target: a byte range of the buffer, or the "/" an absolute-form target
/// with no path stands for.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Piece {
    Range(usize, usize),
    Slash,
}

/// What Luvicorn's `start_request` derives from a head: the field checks' outcome and the split
/// request target. It follows, byte for byte, `scan_request` in lua/luvicorn/protocols/http.lua.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub raw_path: Piece,
    pub query: (usize, usize),
    /// The percent-decoded path when it differs from `raw_path`.
    pub decoded: Option<Vec<u8>>,
    pub content_length: Option<i64>,
    pub chunked: bool,
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect: bool,
    /// `TE` names trailers.
    pub trailers: bool,
    /// The last `Upgrade` value.
    pub upgrade: Option<(usize, usize)>,
    /// An `X-Forwarded-For`, `X-Forwarded-Proto` or `Forwarded` field is present.
    pub proxied: bool,
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether the comma/blank separated tokens of a Connection value include close / keep-alive.
fn connection_tokens(v: &[u8], close: &mut bool, keep_alive: &mut bool) {
    for tok in v.split(|&c| c == b',' || c == b' ' || c == b'\t') {
        if tok.eq_ignore_ascii_case(b"close") {
            *close = true;
        } else if tok.eq_ignore_ascii_case(b"keep-alive") {
            *keep_alive = true;
        }
    }
}

/// `%XX` (two hex digits) becomes the byte; any other `%` stays. None when there is nothing to decode.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.contains(&b'%') {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    Some(out)
}

/// Splits the request target: origin-form, absolute-form (`http://host/path`, scheme in any case)
/// or `*`. None for anything else.
fn split_target(b: &[u8], target: (usize, usize)) -> Option<(Piece, (usize, usize))> {
    let t = &b[target.0..target.1];
    let (raw, query) = match t.iter().position(|&c| c == b'?') {
        Some(q) => ((target.0, target.0 + q), (target.0 + q + 1, target.1)),
        None => (target, (target.1, target.1)),
    };
    let r = &b[raw.0..raw.1];
    if r.first() == Some(&b'/') || r == b"*" {
        return Some((Piece::Range(raw.0, raw.1), query));
    }
    if r.len() < 4 || !r[..4].eq_ignore_ascii_case(b"http") {
        return None;
    }
    let mut i = 4;
    if matches!(r.get(4), Some(b's' | b'S')) {
        i = 5;
    }
    if !r[i..].starts_with(b"://") {
        return None;
    }
    i += 3;
    match r[i..].iter().position(|&c| c == b'/') {
        Some(p) => Some((Piece::Range(raw.0 + i + p, raw.1), query)),
        None => Some((Piece::Slash, query)),
    }
}

/// Checks a parsed head's fields and splits its target; rejections in the Lua code's order.
pub fn scan(b: &[u8], head: &Head, max_body: Option<f64>) -> Result<Request, (u16, &'static str)> {
    let mut hosts = 0;
    let mut cl: Option<i64> = None;
    let mut te: Option<Vec<u8>> = None;
    let (mut close, mut keep_alive_token) = (false, false);
    let (mut expect, mut trailers, mut proxied) = (false, false, false);
    let mut upgrade = None;
    for &(name, value) in &head.headers {
        let n = &b[name.0..name.1];
        let v = &b[value.0..value.1];
        if n.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if n.eq_ignore_ascii_case(b"content-length") {
            if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
                return Err((400, "Invalid Content-Length"));
            }
            let len = v.iter().fold(0i64, |a, &c| a * 10 + (c - b'0') as i64);
            if cl.is_some_and(|c| c != len) {
                return Err((400, "Conflicting Content-Length headers"));
            }
            cl = Some(len);
        } else if n.eq_ignore_ascii_case(b"transfer-encoding") {
            // joined with "," as the Lua code does, then blanks dropped and lower-cased
            let codings = match &mut te {
                Some(c) => {
                    c.push(b',');
                    c
                }
                None => te.insert(Vec::new()),
            };
            codings.extend(
                v.iter()
                    .filter(|&&c| c != b' ' && c != b'\t')
                    .map(u8::to_ascii_lowercase),
            );
        } else if n.eq_ignore_ascii_case(b"connection") {
            connection_tokens(v, &mut close, &mut keep_alive_token);
        } else if n.eq_ignore_ascii_case(b"expect") {
            if v.eq_ignore_ascii_case(b"100-continue") {
                expect = true;
            }
        } else if n.eq_ignore_ascii_case(b"te") {
            if contains_ignore_case(v, b"trailers") {
                trailers = true;
            }
        } else if n.eq_ignore_ascii_case(b"x-forwarded-proto")
            || n.eq_ignore_ascii_case(b"x-forwarded-for")
            || n.eq_ignore_ascii_case(b"forwarded")
        {
            proxied = true;
        } else if n.eq_ignore_ascii_case(b"upgrade") {
            upgrade = Some(value);
        }
    }
    let minor = head.minor;
    if minor == 1 && hosts == 0 {
        return Err((400, "Missing Host header"));
    }
    if hosts > 1 {
        return Err((400, "Multiple Host headers"));
    }
    let mut chunked = false;
    if let Some(codings) = te {
        if cl.is_some() {
            return Err((400, "Both Content-Length and Transfer-Encoding"));
        }
        if minor == 0 {
            return Err((400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if codings != b"chunked" {
            if contains_ignore_case(&codings, b"chunked") && !codings.ends_with(b"chunked") {
                return Err((400, "Transfer-Encoding must end with chunked"));
            }
            return Err((501, "Unsupported Transfer-Encoding"));
        }
        chunked = true;
    }
    if let (Some(len), Some(max)) = (cl, max_body) {
        if len as f64 > max {
            return Err((413, "Request body too large"));
        }
    }
    let Some((raw_path, query)) = split_target(b, head.target) else {
        return Err((400, "Invalid request target"));
    };
    let decoded = match raw_path {
        Piece::Range(s, e) => percent_decode(&b[s..e]),
        Piece::Slash => None,
    };
    let keep_alive = if minor == 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    Ok(Request {
        raw_path,
        query,
        decoded,
        content_length: cl,
        chunked,
        keep_alive,
        expect,
        trailers,
        upgrade,
        proxied,
    })
}

fn limit(a: &Args, i: usize) -> LuaResult<usize> {
    let n = a.int(i)?;
    Ok(n.max(0) as usize)
}

fn max_body_arg(a: &Args, i: usize) -> LuaResult<Option<f64>> {
    match a.get(i) {
        LuaValue::Nil => Ok(None),
        LuaValue::Integer(n) => Ok(Some(*n as f64)),
        LuaValue::Number(n) => Ok(Some(*n)),
        _ => Err(a.bad(i, "number")),
    }
}

/// `b[r.0..r.1]` with no panic path: the pushes run between Lua's C frames, which a panic must
/// not unwind through (the parser's ranges are always in bounds).
fn span(b: &[u8], r: (usize, usize)) -> &[u8] {
    b.get(r.0..r.1).unwrap_or_default()
}

unsafe fn push(l: *mut ffi::lua_State, r: &[u8]) {
    // SAFETY: the caller checked the stack room; lua_pushlstring copies the bytes.
    unsafe {
        ffi::lua_pushlstring(l, r.as_ptr().cast(), r.len());
    }
}

/// Pushes a header name lower-cased, without an allocation for the usual short names.
unsafe fn push_lower(l: *mut ffi::lua_State, name: &[u8]) {
    // SAFETY: as push; an error raised by Lua (out of memory) can only leak the long-name buffer.
    unsafe {
        if !name.iter().any(u8::is_ascii_uppercase) {
            push(l, name);
        } else if name.len() <= 64 {
            let mut buf = [0u8; 64];
            for (d, c) in buf.iter_mut().zip(name) {
                *d = c.to_ascii_lowercase();
            }
            push(l, &buf[..name.len()]);
        } else {
            let mut v = std::mem::ManuallyDrop::new(name.to_ascii_lowercase());
            push(l, &v);
            std::mem::ManuallyDrop::drop(&mut v);
        }
    }
}

/// Pushes `consumed, method, target, http_minor, headers` (5 values) for a parsed head.
unsafe fn push_head(l: *mut ffi::lua_State, b: &[u8], head: &Head) {
    // SAFETY: the caller checked room for 20 slots; only strings and tables are pushed.
    unsafe {
        ffi::lua_pushinteger(l, head.consumed as ffi::lua_Integer);
        push(l, span(b, head.method));
        push(l, span(b, head.target));
        ffi::lua_pushinteger(l, head.minor as ffi::lua_Integer);
        ffi::lua_createtable(l, head.headers.len() as c_int, 0);
        for (i, (name, value)) in head.headers.iter().enumerate() {
            ffi::lua_createtable(l, 2, 0);
            push_lower(l, span(b, *name));
            ffi::lua_rawseti(l, -2, 1);
            push(l, span(b, *value));
            ffi::lua_rawseti(l, -2, 2);
            ffi::lua_rawseti(l, -2, (i + 1) as ffi::lua_Integer);
        }
    }
}

/// Pushes `raw_path, query_string, path, content_length, chunked, keep_alive, expect_100,
/// trailers, upgrade, proxied` (10 values); the target is at stack index `target_idx`.
unsafe fn push_request(
    l: *mut ffi::lua_State,
    b: &[u8],
    head: &Head,
    req: &Request,
    target_idx: c_int,
) {
    // SAFETY: as push_head.
    unsafe {
        let raw_idx = ffi::lua_gettop(l) + 1;
        match req.raw_path {
            // the usual origin-form target with no query: the same string
            Piece::Range(s, e) if (s, e) == head.target => ffi::lua_pushvalue(l, target_idx),
            Piece::Range(s, e) => push(l, span(b, (s, e))),
            Piece::Slash => push(l, b"/"),
        }
        push(l, span(b, req.query));
        match &req.decoded {
            Some(d) => push(l, d),
            None => ffi::lua_pushvalue(l, raw_idx),
        }
        match req.content_length {
            Some(n) => ffi::lua_pushinteger(l, n as ffi::lua_Integer),
            None => ffi::lua_pushboolean(l, 0),
        }
        for flag in [req.chunked, req.keep_alive, req.expect, req.trailers] {
            ffi::lua_pushboolean(l, flag as c_int);
        }
        match req.upgrade {
            Some(r) => push(l, span(b, r)),
            None => ffi::lua_pushboolean(l, 0),
        }
        ffi::lua_pushboolean(l, req.proxied as c_int);
    }
}

/// A parse (and for `http_parse_request`, a scan) outcome, before anything is pushed.
type Outcome = (Parsed, Option<Result<Request, (u16, &'static str)>>);

fn outcome(
    b: &[u8],
    max_head: usize,
    max_headers: usize,
    scan_with: Option<Option<f64>>,
) -> Outcome {
    let parsed = parse(b, max_head, max_headers);
    let scanned = match (&parsed, scan_with) {
        (Parsed::Done(head), Some(max_body)) => Some(scan(b, head, max_body)),
        _ => None,
    };
    (parsed, scanned)
}

/// Pushes the results of an outcome; returns how many.
unsafe fn push_outcome(l: *mut ffi::lua_State, b: &[u8], out: &Outcome) -> c_int {
    // SAFETY: room for 20 slots is checked here; only strings, numbers and tables are pushed.
    unsafe {
        ffi::luaL_checkstack(l, 20, std::ptr::null());
        let reject = |status: u16, reason: &str| {
            ffi::lua_pushboolean(l, 0);
            ffi::lua_pushinteger(l, status as ffi::lua_Integer);
            push(l, reason.as_bytes());
            3
        };
        match out {
            (Parsed::Incomplete, _) => {
                ffi::lua_pushnil(l);
                1
            }
            (Parsed::Reject(status, reason), _) => reject(*status, reason),
            (Parsed::Done(_), Some(Err((status, reason)))) => reject(*status, reason),
            (Parsed::Done(head), None) => {
                push_head(l, b, head);
                5
            }
            (Parsed::Done(head), Some(Ok(req))) => {
                push_head(l, b, head);
                let target_idx = ffi::lua_gettop(l) - 2;
                push_request(l, b, head, req, target_idx);
                15
            }
        }
    }
}

fn parse_with_args(
    lua: &Lua,
    a: &Args,
    scan_with: Option<Option<f64>>,
) -> LuaResult<LuaMultiValue> {
    let buf = a.string(1)?;
    let max_head = limit(a, 2)?;
    let max_headers = limit(a, 3)?;
    let bytes = buf.as_bytes();
    let out = outcome(&bytes, max_head, max_headers, scan_with);
    // SAFETY: exec_raw runs the pushes in a protected call; `bytes` and `out` outlive it.
    unsafe {
        lua.exec_raw::<LuaMultiValue>((), |l| {
            push_outcome(l, &bytes, &out);
        })
    }
}

/// `uv.http_parse_head(buf, max_head, max_headers)`: see the module documentation.
pub fn http_parse_head(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    parse_with_args(lua, a, None)
}

/// `uv.http_parse_request(buf, max_head, max_headers, max_body)`: the head, then `scan`'s checks and
/// split target (see docs/api.md).
pub fn http_parse_request(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let max_body = max_body_arg(a, 4)?;
    parse_with_args(lua, a, Some(max_body))
}

/// The fast path of both functions: valid arguments are handled with the raw C API, anything else
/// goes to the full implementation (which raises the argument errors).
unsafe fn parse_fast(l: *mut ffi::lua_State, scan_request: bool) -> c_int {
    // SAFETY: the buffer stays on the stack (argument 1) for the whole call; the outcome is kept
    // from dropping across the Lua calls that could raise (out of memory), so a raise only leaks.
    unsafe {
        let int = |i| {
            let mut ok = 0;
            let n = ffi::lua_tointegerx(l, i, &mut ok);
            (ffi::lua_type(l, i) == ffi::LUA_TNUMBER && ok != 0).then_some(n.max(0) as usize)
        };
        let max_body = match ffi::lua_type(l, 4) {
            _ if !scan_request => None,
            ffi::LUA_TNONE | ffi::LUA_TNIL => Some(None),
            ffi::LUA_TNUMBER => Some(Some(ffi::lua_tonumberx(l, 4, std::ptr::null_mut()))),
            _ => return crate::fast::fallback(l),
        };
        let (Some(max_head), Some(max_headers)) = (int(2), int(3)) else {
            return crate::fast::fallback(l);
        };
        if ffi::lua_type(l, 1) != ffi::LUA_TSTRING {
            return crate::fast::fallback(l);
        }
        let mut len = 0;
        let p = ffi::lua_tolstring(l, 1, &mut len);
        let b = std::slice::from_raw_parts(p as *const u8, len);
        let run = || outcome(b, max_head, max_headers, max_body);
        let Ok(out) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) else {
            return crate::fast::fallback(l);
        };
        let out = std::mem::ManuallyDrop::new(out);
        let n = push_outcome(l, b, &out);
        drop(std::mem::ManuallyDrop::into_inner(out));
        n
    }
}

/// The C function behind `uv.http_parse_head`.
pub unsafe extern "C-unwind" fn http_parse_head_fast(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua as a fast path (see parse_fast).
    unsafe { parse_fast(l, false) }
}

/// The C function behind `uv.http_parse_request`.
pub unsafe extern "C-unwind" fn http_parse_request_fast(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua as a fast path (see parse_fast).
    unsafe { parse_fast(l, true) }
}

/// What is wrong with a response header list: the header's index and the kind, which Luvicorn
/// turns into the message its Lua twin raises.
#[derive(Debug, PartialEq)]
pub struct BadHeader(pub usize, pub &'static str);

/// A response header list, checked: the header lines joined, the last content-length value, whether
/// a connection header came and whether one of them says close.
#[derive(Debug, Default, PartialEq)]
pub struct ResponseHeaders<'a> {
    pub lines: Vec<u8>,
    pub content_length: Option<&'a [u8]>,
    pub connection: bool,
    pub close: bool,
}

/// Checks one header after the ones before it; `None` for a name or value that is not a string.
pub fn add_response_header<'a>(
    acc: &mut ResponseHeaders<'a>,
    i: usize,
    name: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> Result<(), BadHeader> {
    let name = name.ok_or(BadHeader(i, "pair"))?;
    if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
        return Err(BadHeader(i, "name"));
    }
    let value = value.ok_or(BadHeader(i, "pair"))?;
    if value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0) {
        return Err(BadHeader(i, "value"));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(BadHeader(i, "content-length"));
        }
        acc.content_length = Some(value);
    } else if name.eq_ignore_ascii_case(b"connection") {
        acc.connection = true;
        acc.close |= value.windows(5).any(|w| w.eq_ignore_ascii_case(b"close"));
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        return Err(BadHeader(i, "transfer-encoding"));
    }
    acc.lines.extend_from_slice(name);
    acc.lines.extend_from_slice(b": ");
    acc.lines.extend_from_slice(value);
    acc.lines.extend_from_slice(b"\r\n");
    Ok(())
}

/// The string at `idx`, if it is one (numbers do not count: a header name or value must be a string).
unsafe fn str_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> Option<&'a [u8]> {
    // SAFETY: the caller keeps the value reachable (in the header table) while the slice is used.
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
            return None;
        }
        let mut len = 0;
        let p = ffi::lua_tolstring(l, idx, &mut len);
        Some(std::slice::from_raw_parts(p as *const u8, len))
    }
}

/// `uv.http_response_headers(headers)` through mlua: what the fast path leaves to it is an argument
/// that is not a table, but it answers a table the same way.
pub fn http_response_headers(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let LuaValue::Table(t) = a.get(1) else {
        return Err(a.bad(1, "table"));
    };
    let bytes = |v: LuaValue| match v {
        LuaValue::String(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    };
    let mut pairs = Vec::new();
    for i in 1..=t.raw_len() {
        pairs.push(match t.raw_get::<LuaValue>(i)? {
            LuaValue::Table(p) => (bytes(p.raw_get(1)?), bytes(p.raw_get(2)?)),
            _ => (None, None),
        });
    }
    let mut acc = ResponseHeaders::default();
    for (i, (n, v)) in pairs.iter().enumerate() {
        if let Err(BadHeader(i, kind)) =
            add_response_header(&mut acc, i + 1, n.as_deref(), v.as_deref())
        {
            return (false, i, kind).into_lua_multi(lua);
        }
    }
    let cl = match acc.content_length {
        Some(v) => lua
            .create_string(v)?
            .to_str()?
            .parse::<i64>()
            .map(LuaValue::Integer)
            .unwrap_or_else(|_| {
                LuaValue::Number(
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::INFINITY),
                )
            }),
        None => LuaValue::Boolean(false),
    };
    (
        lua.create_string(&acc.lines[..])?,
        cl,
        acc.connection,
        acc.close,
    )
        .into_lua_multi(lua)
}

/// The C function behind `uv.http_response_headers(headers)`: `lines, content_length|false,
/// connection, close`, or `false, index, kind`.
pub unsafe extern "C-unwind" fn http_response_headers_fast(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: argument 1 (the table) holds every pair table and so every string sliced, and no Lua
    // code runs while the slices live; the joined lines are kept from dropping across the Lua calls
    // that could raise (out of memory), so a raise only leaks.
    unsafe {
        if ffi::lua_type(l, 1) != ffi::LUA_TTABLE {
            return crate::fast::fallback(l);
        }
        ffi::lua_settop(l, 1);
        let n = ffi::lua_rawlen(l, 1);
        let mut acc = ResponseHeaders {
            lines: Vec::with_capacity(64 * n),
            ..Default::default()
        };
        let mut bad = None;
        for i in 1..=n {
            let (name, value) = if ffi::lua_rawgeti(l, 1, i as ffi::lua_Integer) == ffi::LUA_TTABLE
            {
                ffi::lua_rawgeti(l, -1, 1);
                ffi::lua_rawgeti(l, -2, 2);
                let pair = (str_at(l, -2), str_at(l, -1));
                ffi::lua_settop(l, 1);
                pair
            } else {
                ffi::lua_settop(l, 1);
                (None, None)
            };
            if let Err(e) = add_response_header(&mut acc, i, name, value) {
                bad = Some(e);
                break;
            }
        }
        if let Some(BadHeader(i, kind)) = bad {
            ffi::lua_pushboolean(l, 0);
            ffi::lua_pushinteger(l, i as ffi::lua_Integer);
            ffi::lua_pushlstring(l, kind.as_ptr().cast(), kind.len());
            return 3;
        }
        let acc = std::mem::ManuallyDrop::new(acc);
        let lines = &acc.lines[..];
        ffi::lua_pushlstring(l, lines.as_ptr().cast(), lines.len());
        match acc.content_length {
            // as tonumber does: an integer, or a float past the integers
            Some(v) => {
                ffi::lua_pushlstring(l, v.as_ptr().cast(), v.len());
                if ffi::lua_stringtonumber(l, ffi::lua_tolstring(l, -1, std::ptr::null_mut())) == 0
                {
                    ffi::lua_pushboolean(l, 0);
                }
                ffi::lua_replace(l, -2);
            }
            None => ffi::lua_pushboolean(l, 0),
        }
        ffi::lua_pushboolean(l, acc.connection as c_int);
        ffi::lua_pushboolean(l, acc.close as c_int);
        drop(std::mem::ManuallyDrop::into_inner(acc));
        4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_response_headers_as_luvicorn_does() {
        let mut acc = ResponseHeaders::default();
        let ok = [
            (&b"Content-Type"[..], &b"text/plain"[..]),
            (b"content-length", b"12"),
            (b"CONNECTION", b"Keep-Alive, CLOSE"),
            (b"x-e", b""),
        ];
        for (i, (n, v)) in ok.iter().enumerate() {
            add_response_header(&mut acc, i + 1, Some(n), Some(v)).unwrap();
        }
        assert_eq!(
            &acc.lines[..],
            b"Content-Type: text/plain\r\ncontent-length: 12\r\nCONNECTION: Keep-Alive, CLOSE\r\nx-e: \r\n"
        );
        assert_eq!(acc.content_length, Some(&b"12"[..]));
        assert!(acc.connection && acc.close);
        type Case = (Option<&'static [u8]>, Option<&'static [u8]>, &'static str);
        let bad: &[Case] = &[
            (None, Some(b"v"), "pair"),
            (Some(b"a b"), Some(b"v"), "name"),
            (Some(b""), Some(b"v"), "name"),
            (Some(b"a"), None, "pair"),
            (Some(b"a"), Some(b"x\r\ny"), "value"),
            (Some(b"a"), Some(b"x\0"), "value"),
            (Some(b"Content-Length"), Some(b"1x"), "content-length"),
            (Some(b"content-length"), Some(b""), "content-length"),
            (
                Some(b"Transfer-Encoding"),
                Some(b"chunked"),
                "transfer-encoding",
            ),
        ];
        for &(n, v, kind) in bad {
            let mut acc = ResponseHeaders::default();
            assert_eq!(
                add_response_header(&mut acc, 7, n, v),
                Err(BadHeader(7, kind))
            );
        }
    }

    #[test]
    fn parses_a_simple_head() {
        let b = b"\r\nGET /a?b HTTP/1.1\r\nHost: x \r\nX-A:\t v\r\n\r\nbody";
        let Parsed::Done(h) = parse(b, 16384, 100) else {
            panic!("not parsed")
        };
        assert_eq!(h.consumed, b.len() - 4);
        assert_eq!(&b[h.method.0..h.method.1], b"GET");
        assert_eq!(&b[h.target.0..h.target.1], b"/a?b");
        assert_eq!(h.minor, 1);
        let v = h.headers[1].1;
        assert_eq!(&b[v.0..v.1], b"v");
    }

    #[test]
    fn rejects_like_the_lua_parser() {
        let cases: &[(&[u8], usize, usize, Parsed)] = &[
            (
                b"GET / HTTP/2.0\r\n\r\n",
                100,
                10,
                Parsed::Reject(505, "Unsupported HTTP version"),
            ),
            (
                b"GET / HTTP/1.10\r\n\r\n",
                100,
                10,
                Parsed::Reject(505, "Unsupported HTTP version"),
            ),
            (
                b"GET  / HTTP/1.1\r\n\r\n",
                100,
                10,
                Parsed::Reject(400, "Invalid request line"),
            ),
            (
                b"GET / HTTP/1.1\r\n x\r\n\r\n",
                100,
                10,
                Parsed::Reject(400, "Obsolete line folding in header"),
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
                100,
                10,
                Parsed::Reject(400, "Invalid header line"),
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n",
                100,
                1,
                Parsed::Reject(431, "Too many headers"),
            ),
            (
                b"GET / HTTP/1.1\nHost",
                100,
                10,
                Parsed::Reject(400, "Invalid line ending in request head"),
            ),
            (
                b"GET / HTTP/1.1\r\nHo\x01",
                100,
                10,
                Parsed::Reject(400, "Invalid character in request head"),
            ),
            (
                b"GET /aaaaaaaaaa",
                8,
                10,
                Parsed::Reject(414, "Request line too long"),
            ),
            (
                b"GET / HTTP/1.1\r\nA: bbbbbbbb",
                20,
                10,
                Parsed::Reject(431, "Request head too large"),
            ),
            (b"GET / HTTP/1.1\r\n", 100, 10, Parsed::Incomplete),
        ];
        for (head, max_head, max_headers, want) in cases {
            assert_eq!(
                &parse(head, *max_head, *max_headers),
                want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    fn scanned(b: &[u8], max_body: Option<f64>) -> Result<Request, (u16, &'static str)> {
        let Parsed::Done(h) = parse(b, 16384, 100) else {
            panic!("not parsed")
        };
        scan(b, &h, max_body)
    }

    #[test]
    fn scans_fields_and_splits_the_target() {
        let b = b"POST http://h/a%41%zz?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\
                  Connection: x, Close\r\nExpect: 100-Continue\r\nTE: trailers\r\nUpgrade: ws\r\n\r\n";
        let r = scanned(b, None).expect("accepted");
        let Piece::Range(s, e) = r.raw_path else {
            panic!("no path")
        };
        assert_eq!(&b[s..e], b"/a%41%zz");
        assert_eq!(&b[r.query.0..r.query.1], b"q=1");
        assert_eq!(r.decoded.as_deref(), Some(&b"/aA%zz"[..]));
        assert_eq!(r.content_length, Some(3));
        assert!(!r.keep_alive && r.expect && r.trailers && !r.chunked && !r.proxied);
        let u = r.upgrade.expect("upgrade");
        assert_eq!(&b[u.0..u.1], b"ws");
        let r = scanned(
            b"GET https://h HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            None,
        )
        .expect("ok");
        assert_eq!(r.raw_path, Piece::Slash);
        assert!(r.keep_alive);
    }

    #[test]
    fn rejects_fields_in_the_lua_order() {
        let cases: &[(&[u8], (u16, &str))] = &[
            (b"GET / HTTP/1.1\r\n\r\n", (400, "Missing Host header")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", (400, "Multiple Host headers")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\nHost: b\r\n\r\n", (400, "Invalid Content-Length")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", (400, "Conflicting Content-Length headers")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", (400, "Both Content-Length and Transfer-Encoding")),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", (400, "Transfer-Encoding in an HTTP/1.0 request")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", (400, "Transfer-Encoding must end with chunked")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n\r\n", (501, "Unsupported Transfer-Encoding")),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", (413, "Request body too large")),
            (b"GET x HTTP/1.1\r\nHost: a\r\n\r\n", (400, "Invalid request target")),
        ];
        for (head, want) in cases {
            assert_eq!(
                scanned(head, Some(10.0)).err(),
                Some(*want),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
