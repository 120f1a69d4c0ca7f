//! Extension: streaming deflate and inflate (raw, zlib or gzip framing) on flate2's pure-Rust
//! backend, for WebSocket permessage-deflate and the toolkit's gzip middleware.

use crate::args::Args;
use crate::error::{fail, fail_with};
use crate::event_loop::Core;
use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};
use mlua::prelude::*;
use std::rc::Rc;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Raw,
    Zlib,
    Gzip,
}

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

pub struct Deflater {
    c: Compress,
    format: Format,
    level: u32,
    crc: Crc,
    started: bool,
}

pub struct Inflater {
    d: Decompress,
    format: Format,
    max_output: usize,
    /// gzip: header bytes gathered until the header is complete; then trailer bytes.
    pending: Vec<u8>,
    header_done: bool,
    ended: bool,
    crc: Crc,
}

fn options(a: &Args) -> LuaResult<(Format, Option<LuaTable>)> {
    let t = a.opt_table(1)?;
    let format = match &t {
        Some(t) => match t.get::<Option<String>>("format")?.as_deref() {
            None | Some("zlib") => Format::Zlib,
            Some("raw") => Format::Raw,
            Some("gzip") => Format::Gzip,
            Some(other) => return Err(a.invalid(1, &format!("unknown format '{other}'"))),
        },
        None => Format::Zlib,
    };
    if let Some(t) = &t {
        if let Some(w) = t.get::<Option<i64>>("window_bits")? {
            if !(8..=15).contains(&w) {
                return Err(a.invalid(1, "window_bits must be 8..15"));
            }
        }
    }
    Ok((format, t))
}

fn new_compress(format: Format, level: u32) -> Compress {
    Compress::new(Compression::new(level), format == Format::Zlib)
}

pub fn new_deflate(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (format, t) = options(a)?;
    let level = match &t {
        Some(t) => t.get::<Option<i64>>("level")?.unwrap_or(6),
        None => 6,
    };
    if !(0..=9).contains(&level) {
        return Err(a.invalid(1, "level must be 0..9"));
    }
    if let Some(t) = &t {
        // The pure-Rust compressor always uses a 32 KiB window; a peer that asks for a smaller one
        // must be declined rather than sent data it cannot decode.
        if t.get::<Option<i64>>("window_bits")?
            .is_some_and(|w| w != 15)
        {
            return fail_with(lua, "ENOTSUP", "deflate supports window_bits 15 only");
        }
    }
    let level = level as u32;
    let d = Deflater {
        c: new_compress(format, level),
        format,
        level,
        crc: Crc::new(),
        started: false,
    };
    lua.create_any_userdata(d)?.into_lua_multi(lua)
}

pub fn new_inflate(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (format, t) = options(a)?;
    let max_output = match &t {
        Some(t) => t.get::<Option<i64>>("max_output")?.unwrap_or(0),
        None => 0,
    };
    let max_output = if max_output <= 0 {
        usize::MAX
    } else {
        max_output as usize
    };
    let i = Inflater {
        d: Decompress::new(format == Format::Zlib),
        format,
        max_output,
        pending: Vec::new(),
        header_done: format != Format::Gzip,
        ended: false,
        crc: Crc::new(),
    };
    lua.create_any_userdata(i)?.into_lua_multi(lua)
}

fn this<T: 'static>(a: &Args, what: &str) -> LuaResult<LuaUserDataRefMut<T>> {
    match a.get(1) {
        LuaValue::UserData(ud) => ud.borrow_mut::<T>().map_err(|_| a.bad(1, what)),
        _ => Err(a.bad(1, what)),
    }
}

/// Runs the compressor over `input` with `flush` until it has consumed everything and, for a
/// flush, written everything out.
fn compress(
    c: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(input, out, flush)
            .map_err(|e| e.to_string())?;
        input = &input[(c.total_in() - before) as usize..];
        if status == Status::StreamEnd {
            return Ok(());
        }
        let room_left = out.len() < out.capacity();
        if input.is_empty() && room_left && (flush != FlushCompress::Finish) {
            return Ok(());
        }
    }
}

pub fn deflate_write(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let mut d = this::<Deflater>(a, "deflate stream")?;
    let data = a.string(2)?;
    let flush = match a.opt_str(3)?.as_deref() {
        None | Some("none") => FlushCompress::None,
        Some("sync") => FlushCompress::Sync,
        Some("full") => FlushCompress::Full,
        Some("finish") => FlushCompress::Finish,
        Some(other) => return Err(a.invalid(3, &format!("unknown flush mode '{other}'"))),
    };
    let input = data.as_bytes();
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let d = &mut *d;
    if d.format == Format::Gzip {
        if !d.started {
            out.extend_from_slice(&GZIP_HEADER);
        }
        d.crc.update(&input);
    }
    d.started = true;
    if let Err(e) = compress(&mut d.c, &input, flush, &mut out) {
        return fail_with(lua, "EINVAL", &e);
    }
    if d.format == Format::Gzip && flush == FlushCompress::Finish {
        out.extend_from_slice(&d.crc.sum().to_le_bytes());
        out.extend_from_slice(&d.crc.amount().to_le_bytes());
    }
    lua.create_string(&out)?.into_lua_multi(lua)
}

pub fn deflate_reset(_lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let mut d = this::<Deflater>(a, "deflate stream")?;
    d.c = new_compress(d.format, d.level);
    d.crc = Crc::new();
    d.started = false;
    Ok(LuaMultiValue::new())
}

/// Length of a complete gzip header at the start of `b`, or None while more is needed.
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, ()> {
    if b.len() < 10 {
        return Ok(None);
    }
    if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
        return Err(());
    }
    let flags = b[3];
    let mut n = 10;
    if flags & 4 != 0 {
        if b.len() < n + 2 {
            return Ok(None);
        }
        n += 2 + u16::from_le_bytes([b[n], b[n + 1]]) as usize;
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            match b.get(n..).and_then(|r| r.iter().position(|&c| c == 0)) {
                Some(z) => n += z + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & 2 != 0 {
        n += 2;
    }
    Ok(if b.len() >= n { Some(n) } else { None })
}

pub fn inflate_write(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let mut i = this::<Inflater>(a, "inflate stream")?;
    let data = a.string(2)?;
    let i = &mut *i;
    let bytes = data.as_bytes();
    let mut owned;
    let mut input: &[u8] = &bytes;
    if !i.header_done {
        i.pending.extend_from_slice(input);
        match gzip_header_len(&i.pending) {
            Err(()) => return fail(lua, libc::EINVAL),
            Ok(None) => return lua.create_string("")?.into_lua_multi(lua),
            Ok(Some(n)) => {
                owned = std::mem::take(&mut i.pending);
                owned.drain(..n);
                i.header_done = true;
                input = &owned;
            }
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity((input.len() * 3).min(1 << 20) + 64);
    // Until the input is used up and the inflater had room to spare: a full buffer may mean
    // it holds more output.
    while !i.ended {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before = i.d.total_in();
        let status = match i.d.decompress_vec(input, &mut out, FlushDecompress::None) {
            Ok(s) => s,
            Err(_) => return fail(lua, libc::EINVAL),
        };
        input = &input[(i.d.total_in() - before) as usize..];
        if out.len() > i.max_output {
            return fail(lua, libc::EMSGSIZE);
        }
        if status == Status::StreamEnd {
            i.ended = true;
        } else if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    if i.format == Format::Gzip {
        i.crc.update(&out);
        if i.ended {
            i.pending.extend_from_slice(input);
            if i.pending.len() >= 8 {
                let crc =
                    u32::from_le_bytes([i.pending[0], i.pending[1], i.pending[2], i.pending[3]]);
                if crc != i.crc.sum() {
                    return fail(lua, libc::EINVAL);
                }
            }
        }
    }
    lua.create_string(&out)?.into_lua_multi(lua)
}

pub fn inflate_reset(_lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let mut i = this::<Inflater>(a, "inflate stream")?;
    i.d = Decompress::new(i.format == Format::Zlib);
    i.pending.clear();
    i.header_done = i.format != Format::Gzip;
    i.ended = false;
    i.crc = Crc::new();
    Ok(LuaMultiValue::new())
}
