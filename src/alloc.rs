//! A cache of small freed blocks in front of the Lua state's allocator.
//!
//! A server's Lua code makes and drops some twenty small objects per request (tables, closures,
//! strings). The collector frees them in bursts, more at once than glibc's per-thread cache keeps,
//! so most of those frees and mallocs take glibc's slow paths. Freed blocks of up to `MAX_SIZE`
//! bytes are kept here by exact size and handed back for the next allocation of that size. Every
//! block is still one the state's own allocator made, so the cache only delays frees: a block may be
//! freed or resized by either. It is bounded (`MAX_BYTES`), given back when an allocation fails, and
//! emptied when the state closes, which also puts the state's allocator back.

use mlua::ffi;
use std::os::raw::c_void;

/// Largest block kept, in bytes.
const MAX_SIZE: usize = 256;
/// Bytes kept at most, all sizes together.
const MAX_BYTES: usize = 4 << 20;
/// Blocks kept at most of one size (fits the u16 counts).
const BIN_CAP: usize = 1024;

/// Blocks smaller than a pointer are not kept: a kept block holds the link to the next one.
const MIN_SIZE: usize = std::mem::size_of::<*mut c_void>();

struct Cache {
    prev: ffi::lua_Alloc,
    prev_ud: *mut c_void,
    /// Kept blocks by size (index = size in bytes): a list linked through the blocks themselves.
    heads: [*mut c_void; MAX_SIZE + 1],
    counts: [u16; MAX_SIZE + 1],
    bytes: usize,
    /// False once the state closes: everything goes to the state's allocator.
    active: bool,
}

impl Cache {
    /// Hands every kept block back to the state's allocator.
    fn drain(&mut self) {
        for size in MIN_SIZE..=MAX_SIZE {
            let mut p = std::mem::replace(&mut self.heads[size], std::ptr::null_mut());
            while !p.is_null() {
                // SAFETY: a kept block is at least a pointer long and holds the next one's address;
                // it came from `prev` with this size and is not in use.
                unsafe {
                    let next = *(p as *mut *mut c_void);
                    (self.prev)(self.prev_ud, p, size, 0);
                    p = next;
                }
            }
            self.counts[size] = 0;
        }
        self.bytes = 0;
    }
}

unsafe extern "C" fn cached_alloc(
    ud: *mut c_void,
    ptr: *mut c_void,
    osize: usize,
    nsize: usize,
) -> *mut c_void {
    // SAFETY: ud is the Cache installed with this function; a state calls its allocator from one
    // thread at a time.
    let c = unsafe { &mut *(ud as *mut Cache) };
    if c.active {
        if nsize == 0 {
            if ptr.is_null() {
                return std::ptr::null_mut();
            }
            if (MIN_SIZE..=MAX_SIZE).contains(&osize)
                && usize::from(c.counts[osize]) < BIN_CAP
                && c.bytes + osize <= MAX_BYTES
            {
                // SAFETY: the block is osize >= MIN_SIZE bytes and no longer used by Lua.
                unsafe { *(ptr as *mut *mut c_void) = c.heads[osize] };
                c.heads[osize] = ptr;
                c.counts[osize] += 1;
                c.bytes += osize;
                return std::ptr::null_mut();
            }
        } else if ptr.is_null() && (MIN_SIZE..=MAX_SIZE).contains(&nsize) {
            // (osize is the new object's type here, not a size)
            let p = c.heads[nsize];
            if !p.is_null() {
                // SAFETY: a kept block holds the next one's address.
                c.heads[nsize] = unsafe { *(p as *mut *mut c_void) };
                c.counts[nsize] -= 1;
                c.bytes -= nsize;
                return p;
            }
        }
    }
    // SAFETY: the state's own allocator, called as Lua calls it.
    let p = unsafe { (c.prev)(c.prev_ud, ptr, osize, nsize) };
    if p.is_null() && nsize > 0 && c.bytes > 0 {
        // Out of memory: what the cache holds goes back first.
        c.drain();
        // SAFETY: as above.
        return unsafe { (c.prev)(c.prev_ud, ptr, osize, nsize) };
    }
    p
}

/// Closes the cache when dropped: held by a userdata the registry keeps, so its finalizer runs when
/// the state closes, before the state frees its objects and before the C libraries are unloaded.
pub struct Guard {
    main: *mut ffi::lua_State,
    cache: *mut Cache,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: the main thread lives until the state's very end; the cache was never freed.
        unsafe {
            let c = &mut *self.cache;
            let mut ud = std::ptr::null_mut();
            let f = ffi::lua_getallocf(self.main, &mut ud);
            let ours =
                std::ptr::fn_addr_eq(f, cached_alloc as ffi::lua_Alloc) && ud == self.cache.cast();
            if ours {
                ffi::lua_setallocf(self.main, c.prev, c.prev_ud);
            }
            c.active = false;
            c.drain();
            if ours {
                drop(Box::from_raw(self.cache));
            } else {
                // An allocator installed after ours still calls it: it stays, passing everything
                // through, and so must this library's code after the state unloads it.
                keep_loaded();
            }
        }
    }
}

/// Makes this shared library stay mapped when Lua closes it (RTLD_NODELETE).
fn keep_loaded() {
    // SAFETY: dladdr fills `info` for an address inside this library; dlopen with RTLD_NOLOAD only
    // changes the flags of the already loaded library, and its handle is left open on purpose.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(cached_alloc as *const c_void, &mut info) != 0 && !info.dli_fname.is_null()
        {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}

/// Puts the cache in front of the allocator of `l`'s state; the guard takes it away again.
///
/// # Safety
/// `l` is a live thread of the state, and no allocation of it is in progress.
pub unsafe fn install(l: *mut ffi::lua_State) -> Guard {
    // SAFETY: registry and allocator queries on a live state.
    unsafe {
        ffi::lua_rawgeti(l, ffi::LUA_REGISTRYINDEX, ffi::LUA_RIDX_MAINTHREAD);
        let main = ffi::lua_tothread(l, -1);
        ffi::lua_settop(l, -2);
        let mut prev_ud = std::ptr::null_mut();
        let prev = ffi::lua_getallocf(main, &mut prev_ud);
        let cache = Box::into_raw(Box::new(Cache {
            prev,
            prev_ud,
            heads: [std::ptr::null_mut(); MAX_SIZE + 1],
            counts: [0; MAX_SIZE + 1],
            bytes: 0,
            active: true,
        }));
        ffi::lua_setallocf(main, cached_alloc, cache.cast());
        Guard { main, cache }
    }
}
