//! Extension: the native HTTP/1.x request-head parser behind Luvicorn's `--http native`.
//!
//! It follows, byte for byte, the contract written at the top of lua/luvicorn/parsers/lua.lua
//! (the pure-Lua parser); a differential spec feeds both the same inputs.

use crate::args::Args;
use crate::event_loop::Core;
use mlua::prelude::*;
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

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_target(c: u8) -> bool {
    (0x21..=0x7e).contains(&c) || c >= 0x80
}

fn is_value(c: u8) -> bool {
    c == b'\t' || (0x20..=0x7e).contains(&c) || c >= 0x80
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
    let Some(e) = find(b, s, b"\r\n\r\n") else {
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

fn limit(a: &Args, i: usize) -> LuaResult<usize> {
    let n = a.int(i)?;
    Ok(n.max(0) as usize)
}

/// `uv.http_parse_head(buf, max_head, max_headers)`: see the module documentation.
pub fn http_parse_head(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let buf = a.string(1)?;
    let max_head = limit(a, 2)?;
    let max_headers = limit(a, 3)?;
    let bytes = buf.as_bytes();
    match parse(&bytes, max_head, max_headers) {
        Parsed::Incomplete => Ok(LuaMultiValue::from_vec(vec![LuaValue::Nil])),
        Parsed::Reject(status, reason) => Ok(LuaMultiValue::from_vec(vec![
            LuaValue::Boolean(false),
            LuaValue::Integer(status as i64),
            LuaValue::String(lua.create_string(reason)?),
        ])),
        Parsed::Done(head) => {
            // Every lower-cased name, end to end, so the raw section below owns nothing.
            let mut names = Vec::with_capacity(head.headers.len() * 16);
            for (name, _) in &head.headers {
                names.extend(bytes[name.0..name.1].iter().map(u8::to_ascii_lowercase));
            }
            // SAFETY: exec_raw runs this in a protected call with room checked below; it only
            // pushes strings and tables built from slices of `bytes` and `names`, which outlive it.
            unsafe {
                lua.exec_raw::<LuaMultiValue>((), |l| {
                    use mlua::ffi;
                    let push = |r: &[u8]| ffi::lua_pushlstring(l, r.as_ptr().cast(), r.len());
                    ffi::luaL_checkstack(l, 8, std::ptr::null());
                    ffi::lua_pushinteger(l, head.consumed as ffi::lua_Integer);
                    push(&bytes[head.method.0..head.method.1]);
                    push(&bytes[head.target.0..head.target.1]);
                    ffi::lua_pushinteger(l, head.minor as ffi::lua_Integer);
                    ffi::lua_createtable(l, head.headers.len() as i32, 0);
                    let mut at = 0;
                    for (i, (name, value)) in head.headers.iter().enumerate() {
                        let len = name.1 - name.0;
                        ffi::lua_createtable(l, 2, 0);
                        push(&names[at..at + len]);
                        ffi::lua_rawseti(l, -2, 1);
                        push(&bytes[value.0..value.1]);
                        ffi::lua_rawseti(l, -2, 2);
                        ffi::lua_rawseti(l, -2, (i + 1) as ffi::lua_Integer);
                        at += len;
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
