//! Fast paths for the calls a busy program makes most (clock reads, state queries, timer
//! restarts, writes). Each is a plain C function that handles the common, valid case directly on
//! the Lua stack; anything else (a wrong argument, an error, a partial write, a new callback) goes
//! to the full implementation, so results and errors are exactly those of the slow path.

use crate::event_loop::Core;
use crate::handle::{HandleRef, Kind, RawHandle};
use crate::stream::{Buf, Stream, WriteReq};
use mlua::ffi;
use mlua::prelude::*;
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a fast path returns when it handled the call.
enum Out {
    Int(i64),
    Bool(bool),
    /// The shared write request object.
    WriteReq,
    /// Part of a write was taken by the kernel: queue this rest through the full implementation.
    WriteRest(Vec<u8>),
}

/// The loop, from upvalue 1.
unsafe fn core_of<'a>(l: *mut ffi::lua_State) -> &'a Core {
    // SAFETY: upvalue 1 of every fast path is the never-freed core.
    unsafe { &*(ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) as *const Core) }
}

/// Calls the full implementation (upvalue 2) with this call's arguments.
pub(crate) unsafe fn fallback(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: upvalue 2 is the exported function; the arguments are on the stack.
    unsafe {
        let n = ffi::lua_gettop(l);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(2));
        ffi::lua_insert(l, 1);
        ffi::lua_call(l, n, ffi::LUA_MULTRET);
        ffi::lua_gettop(l)
    }
}

/// The handle at stack index `idx`, if it is a luvrs handle (checked by its metatable).
unsafe fn handle_at(l: *mut ffi::lua_State, idx: c_int, core: &Core) -> Option<HandleRef> {
    // SAFETY: read-only stack queries; the metatable pushed is popped again.
    unsafe {
        if ffi::lua_type(l, idx) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(l, idx) == 0 {
            return None;
        }
        let mt = ffi::lua_topointer(l, -1) as usize;
        ffi::lua_settop(l, -2);
        if !core.metatables.borrow().contains(&mt) {
            return None;
        }
        let p = ffi::lua_touserdata(l, idx) as *const RawHandle;
        Some(HandleRef {
            id: (*p).id,
            kind: (*p).kind,
        })
    }
}

unsafe fn int_at(l: *mut ffi::lua_State, idx: c_int) -> Option<i64> {
    let mut ok = 0;
    // SAFETY: lua_tointegerx never raises.
    let v = unsafe { ffi::lua_tointegerx(l, idx, &mut ok) };
    (ok != 0).then_some(v)
}

/// The most strings one fast write takes (a longer array goes to the full implementation).
const MAX_BUFS: usize = 64;

/// The strings to write at `idx`: one string or an array of strings (anything else: None), put in
/// `out`; returns how many. No allocation: a write per request should not cost a malloc.
unsafe fn bufs_at(
    l: *mut ffi::lua_State,
    idx: c_int,
    out: &mut [&[u8]; MAX_BUFS],
) -> Option<usize> {
    // SAFETY: the strings stay on the stack (or in the table argument) for the whole call.
    unsafe {
        let slice = |i: c_int| {
            let mut len = 0;
            let p = ffi::lua_tolstring(l, i, &mut len);
            std::slice::from_raw_parts(p as *const u8, len)
        };
        match ffi::lua_type(l, idx) {
            ffi::LUA_TSTRING => {
                out[0] = slice(idx);
                Some(1)
            }
            ffi::LUA_TTABLE => {
                let n = ffi::lua_rawlen(l, idx);
                if n > MAX_BUFS {
                    return None;
                }
                for (i, slot) in out.iter_mut().enumerate().take(n) {
                    if ffi::lua_rawgeti(l, idx, (i + 1) as ffi::lua_Integer) != ffi::LUA_TSTRING {
                        ffi::lua_settop(l, -2); // the stack goes to the full implementation as it came
                        return None;
                    }
                    // The table keeps the string alive; the stack copy can go.
                    *slot = slice(-1);
                    ffi::lua_settop(l, -2);
                }
                Some(n)
            }
            _ => None,
        }
    }
}

/// Runs a fast path: its answer, or the full implementation when it declined.
unsafe fn run(l: *mut ffi::lua_State, f: impl FnOnce(&Core) -> Option<Out>) -> c_int {
    // SAFETY: see core_of / fallback; values are pushed only after every Rust guard is gone, and
    // the one owned buffer is kept from dropping across Lua calls that could raise.
    unsafe {
        let core = core_of(l);
        let out = catch_unwind(AssertUnwindSafe(|| f(core))).ok().flatten();
        match out {
            None => fallback(l),
            Some(Out::Int(n)) => {
                ffi::lua_pushinteger(l, n);
                1
            }
            Some(Out::Bool(b)) => {
                ffi::lua_pushboolean(l, b as c_int);
                1
            }
            Some(Out::WriteReq) => {
                ffi::lua_rawgeti(
                    l,
                    ffi::LUA_REGISTRYINDEX,
                    core.write_req.get() as ffi::lua_Integer,
                );
                1
            }
            Some(Out::WriteRest(rest)) => {
                let rest = std::mem::ManuallyDrop::new(rest);
                ffi::lua_pushlstring(l, rest.as_ptr().cast(), rest.len());
                drop(std::mem::ManuallyDrop::into_inner(rest));
                ffi::lua_replace(l, 2);
                fallback(l)
            }
        }
    }
}

unsafe extern "C-unwind" fn now(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            Some(Out::Int(core.st.try_borrow().ok()?.now_ms as i64))
        })
    }
}

unsafe extern "C-unwind" fn hrtime(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            Some(Out::Int(core.st.try_borrow().ok()?.hrtime() as i64))
        })
    }
}

unsafe extern "C-unwind" fn is_active(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core)?;
            Some(Out::Bool(
                core.st.try_borrow().ok()?.slots.get(h.id)?.active,
            ))
        })
    }
}

unsafe extern "C-unwind" fn is_closing(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core)?;
            Some(Out::Bool(
                core.st.try_borrow().ok()?.slots.get(h.id)?.closing,
            ))
        })
    }
}

unsafe extern "C-unwind" fn write_queue_size(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core).filter(|h| h.kind.is_stream())?;
            let mut st = core.st.try_borrow_mut().ok()?;
            Some(Out::Int(st.slots.get_mut(h.id)?.stream().wq_bytes as i64))
        })
    }
}

unsafe extern "C-unwind" fn timer_stop(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core).filter(|h| h.kind == Kind::Timer)?;
            let mut st = core.st.try_borrow_mut().ok()?;
            if st.slots.get(h.id)?.closing {
                return None;
            }
            crate::timer::unschedule(&mut st, h.id);
            st.slots[h.id].active = false;
            st.sync(h.id);
            Some(Out::Int(0))
        })
    }
}

/// A restart with the callback the timer already has (a per-request timeout, typically).
unsafe extern "C-unwind" fn timer_start(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core).filter(|h| h.kind == Kind::Timer)?;
            let timeout = u64::try_from(int_at(l, 2)?).ok()?;
            let repeat = u64::try_from(int_at(l, 3)?).ok()?;
            if ffi::lua_type(l, 4) != ffi::LUA_TFUNCTION {
                return None;
            }
            let f = ffi::lua_topointer(l, 4);
            let mut st = core.st.try_borrow_mut().ok()?;
            let slot = st.slots.get_mut(h.id)?;
            if slot.closing || slot.ud.is_none() || slot.timer().cb.as_ref()?.to_pointer() != f {
                return None;
            }
            slot.timer().repeat = repeat;
            crate::timer::schedule(&mut st, h.id, timeout);
            st.slots[h.id].active = true;
            st.sync(h.id);
            Some(Out::Int(0))
        })
    }
}

/// The strings at stack indexes 2.. (write_batched's arguments), put in `out`; None when one is not a
/// string or there are too many.
unsafe fn arg_bufs(l: *mut ffi::lua_State, out: &mut [&[u8]; MAX_BUFS]) -> Option<usize> {
    // SAFETY: the strings stay on the stack for the whole call.
    unsafe {
        let n = usize::try_from(ffi::lua_gettop(l) - 1).ok()?;
        if n > MAX_BUFS {
            return None;
        }
        for (i, slot) in out.iter_mut().enumerate().take(n) {
            let idx = i as c_int + 2;
            if ffi::lua_type(l, idx) != ffi::LUA_TSTRING {
                return None;
            }
            let mut len = 0;
            let p = ffi::lua_tolstring(l, idx, &mut len);
            *slot = std::slice::from_raw_parts(p as *const u8, len);
        }
        Some(n)
    }
}

/// One vectored write of `bufs` to the stream's socket (or descriptor) now; None on any failure,
/// EAGAIN included, which the full implementation then meets and handles itself.
fn send_now(s: &Stream, bufs: &[&[u8]]) -> Option<usize> {
    let sock = s.sock.as_ref()?;
    let mut slices = [IoSlice::new(&[]); MAX_BUFS];
    for (d, b) in slices.iter_mut().zip(bufs) {
        *d = IoSlice::new(b);
    }
    let slices = &slices[..bufs.len()];
    if s.not_sock {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
        let r = unsafe {
            libc::writev(
                sock.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                slices.len() as c_int,
            )
        };
        usize::try_from(r).ok()
    } else {
        sock.send_vectored_with_flags(slices, libc::MSG_NOSIGNAL)
            .ok()
    }
}

/// Appends the bytes of `bufs` after the first `skip` (those the kernel took) to `out`.
fn append_rest(out: &mut Vec<u8>, bufs: &[&[u8]], mut skip: usize) {
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
        } else {
            out.extend_from_slice(&b[skip..]);
            skip = 0;
        }
    }
}

/// `write(stream, data)` without a callback, or `try_write(stream, data)` (`is_try`).
unsafe fn write_impl(l: *mut ffi::lua_State, is_try: bool) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core).filter(|h| h.kind.is_stream())?;
            if !is_try && ffi::lua_type(l, 3) > ffi::LUA_TNIL {
                return None; // a callback: the full implementation keeps it
            }
            let mut store: [&[u8]; MAX_BUFS] = [&[]; MAX_BUFS];
            let nbufs = bufs_at(l, 2, &mut store)?;
            let bufs = &store[..nbufs];
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            let mut st = core.st.try_borrow_mut().ok()?;
            let slot = st.slots.get_mut(h.id)?;
            if slot.closing || total == 0 {
                return None;
            }
            let s = slot.stream();
            if !s.writable || !s.wq.is_empty() {
                return None;
            }
            let n = send_now(s, bufs)?;
            if is_try {
                return Some(Out::Int(n as i64));
            }
            if n == total {
                return Some(Out::WriteReq);
            }
            s.wr_ready = false;
            let mut rest = Vec::with_capacity(total - n);
            append_rest(&mut rest, bufs, n);
            Some(Out::WriteRest(rest))
        })
    }
}

unsafe extern "C-unwind" fn write(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see write_impl).
    unsafe { write_impl(l, false) }
}

unsafe extern "C-unwind" fn try_write(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see write_impl).
    unsafe { write_impl(l, true) }
}

/// The largest call whose strings `write_batched`'s fast path copies into the batch; a longer one
/// goes to the full implementation, which keeps the Lua strings instead.
const BATCH_COPY_MAX: usize = 64 * 1024;

/// `write_batched(stream, ...)`: the strings are copied onto the stream's batch (a buffer reused from
/// one batch to the next), or written at once when the loop is not holding batches, the rest copied
/// onto the queue; no request object and no Lua value is kept either way.
unsafe extern "C-unwind" fn write_batched(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: a fast path (see run).
    unsafe {
        run(l, |core| {
            let h = handle_at(l, 1, core).filter(|h| h.kind.is_stream())?;
            let mut store: [&[u8]; MAX_BUFS] = [&[]; MAX_BUFS];
            // No string at all is an argument error, which the full implementation raises.
            let nbufs = arg_bufs(l, &mut store).filter(|&n| n > 0)?;
            let bufs = &store[..nbufs];
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if total > BATCH_COPY_MAX {
                return None;
            }
            let mut st = core.st.try_borrow_mut().ok()?;
            let holding = st.holding;
            let slot = st.slots.get_mut(h.id)?;
            // No userdata held: the full implementation takes hold of it.
            if slot.closing || slot.ud.is_none() {
                return None;
            }
            let s = slot.stream();
            if !s.writable || s.sock.is_none() {
                return None;
            }
            if total == 0 {
                return Some(Out::Int(s.wq_bytes as i64));
            }
            let mut sent = 0;
            if !holding && s.wq.is_empty() {
                sent = send_now(s, bufs)?;
                if sent == total {
                    return Some(Out::Int(0));
                }
                s.wr_ready = false;
            }
            let fresh = !(holding && s.batch_open);
            if fresh {
                s.batch_open = holding;
                s.wq.push_back(WriteReq {
                    bufs: match std::mem::take(&mut s.spare) {
                        spare if spare.is_empty() => vec![Buf::Owned(Vec::with_capacity(total))],
                        spare => spare,
                    },
                    idx: 0,
                    off: 0,
                    cb: None,
                    file: None,
                    send_fd: None,
                });
            }
            let req = s.wq.back_mut()?;
            if !matches!(req.bufs.last(), Some(Buf::Owned(_))) {
                req.bufs.push(Buf::Owned(Vec::with_capacity(total)));
            }
            if let Some(Buf::Owned(v)) = req.bufs.last_mut() {
                append_rest(v, bufs, sent);
            }
            s.wq_bytes += total - sent;
            let q = s.wq_bytes as i64;
            if fresh {
                slot.reqs += 1;
                st.alive_reqs += 1;
                if holding {
                    st.batched.push(h.id);
                }
            }
            Some(Out::Int(q))
        })
    }
}

/// Module functions with a fast path.
const FAST: &[(&str, ffi::lua_CFunction)] = &[
    ("now", now),
    ("hrtime", hrtime),
    ("is_active", is_active),
    ("is_closing", is_closing),
    ("stream_get_write_queue_size", write_queue_size),
    ("tcp_write_queue_size", write_queue_size),
    ("timer_start", timer_start),
    ("timer_stop", timer_stop),
    ("write", write),
    ("try_write", try_write),
    ("write_batched", write_batched),
    ("http_parse_head", crate::http_parser::http_parse_head_fast),
    (
        "http_parse_request",
        crate::http_parser::http_parse_request_fast,
    ),
    (
        "http_response_headers",
        crate::http_parser::http_response_headers_fast,
    ),
];

/// Puts the fast paths in the module table, each over the full implementation it replaces.
pub fn install(lua: &Lua, core: &Core, uv: &LuaTable) -> LuaResult<()> {
    for &(name, f) in FAST {
        let full: LuaFunction = uv.raw_get(name)?;
        let core_ptr = LuaLightUserData(core as *const Core as *mut std::ffi::c_void);
        // SAFETY: pushes a C closure over (core, full implementation) left on the stack by exec_raw.
        let fast: LuaFunction =
            unsafe { lua.exec_raw((core_ptr, full), |l| ffi::lua_pushcclosure(l, f, 2))? };
        uv.raw_set(name, fast)?;
    }
    Ok(())
}
