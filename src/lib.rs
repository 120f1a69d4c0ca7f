//! luvrs: a libuv-like event loop for stock Lua 5.4, with luv's API.
//!
//! `require "luvrs"` returns one table of functions. Handles are userdata whose metatable carries
//! the same functions as methods (`uv.timer_start(t, ...)` is `t:start(...)`).

mod alloc;
mod args;
mod async_handle;
mod deflate;
mod dns;
mod error;
#[path = "loop.rs"]
mod event_loop;
mod fast;
mod fs;
mod handle;
mod http_parser;
mod misc;
mod pipe;
mod poll;
mod process;
mod signal;
mod stream;
mod tcp;
mod timer;
mod tty;
mod udp;
mod watcher;

use args::Args;
use event_loop::{Core, State};
use handle::Kind;
use mlua::ffi;
use mlua::prelude::*;
use std::cell::RefCell;
use std::ffi::c_void;
use std::os::raw::c_int;
use std::rc::Rc;

/// The signature of every luvrs function: the Lua state, the loop, and the call's arguments.
type Fun = fn(&Lua, &Rc<Core>, &Args) -> LuaResult<LuaMultiValue>;

/// A marker a function returns (with a message) to have its trampoline raise a plain string error,
/// as luv's functions do; mlua itself would raise a userdata.
static RAISE_TAG: u8 = 0;

fn raise_tag() -> *mut c_void {
    &RAISE_TAG as *const u8 as *mut c_void
}

/// Calls the mlua function in upvalue 1 with the arguments; raises its message if it returned
/// the raise marker. No Rust value with a destructor lives in this frame, so `lua_error`'s longjmp
/// skips nothing.
unsafe extern "C-unwind" fn trampoline(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua as a C closure with one upvalue, the function to call.
    unsafe {
        let n = ffi::lua_gettop(l);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
        ffi::lua_insert(l, 1);
        ffi::lua_call(l, n, ffi::LUA_MULTRET);
        let nres = ffi::lua_gettop(l);
        if nres >= 2 && ffi::lua_touserdata(l, 1) == raise_tag() {
            ffi::lua_settop(l, 2);
            ffi::lua_error(l);
        }
        nres
    }
}

fn export(lua: &Lua, core: &Rc<Core>, name: &'static str, f: Fun) -> LuaResult<LuaFunction> {
    let c = core.clone();
    let inner = lua.create_function(move |lua, args: LuaMultiValue| {
        let a = Args::new(lua, name, args);
        match f(lua, &c, &a) {
            Ok(v) => Ok(v),
            Err(e) => Ok(LuaMultiValue::from_vec(vec![
                LuaValue::LightUserData(LuaLightUserData(raise_tag())),
                LuaValue::String(lua.create_string(error::lua_text(&e))?),
            ])),
        }
    })?;
    // SAFETY: pushes a C closure over the function exec_raw left on the stack.
    unsafe {
        lua.exec_raw::<LuaFunction>(inner, |state| ffi::lua_pushcclosure(state, trampoline, 1))
    }
}

/// The request object luv's write/connect/shutdown return (shared: programs only test it).
struct Req(&'static str);

/// `(name in the module, function)`; the method name is the same unless given in METHODS.
const FUNCTIONS: &[(&str, Fun)] = &[
    // loop
    ("run", event_loop::run),
    ("stop", event_loop::stop),
    ("loop_alive", event_loop::loop_alive),
    ("loop_mode", event_loop::loop_mode),
    ("now", event_loop::now),
    ("update_time", event_loop::update_time),
    ("hrtime", event_loop::hrtime),
    ("backend_fd", event_loop::backend_fd),
    ("backend_timeout", event_loop::backend_timeout),
    ("set_error_handler", event_loop::set_error_handler),
    ("walk", handle::walk),
    // handle
    ("close", handle::close),
    ("is_active", handle::is_active),
    ("is_closing", handle::is_closing),
    ("ref", handle::ref_),
    ("unref", handle::unref),
    ("has_ref", handle::has_ref),
    ("handle_get_type", handle::get_type),
    ("fileno", handle::fileno),
    ("send_buffer_size", handle::send_buffer_size),
    ("recv_buffer_size", handle::recv_buffer_size),
    // timer
    ("new_timer", timer::new_timer),
    ("timer_start", timer::timer_start),
    ("timer_stop", timer::timer_stop),
    ("timer_again", timer::timer_again),
    ("timer_set_repeat", timer::timer_set_repeat),
    ("timer_get_repeat", timer::timer_get_repeat),
    ("timer_get_due_in", timer::timer_get_due_in),
    // idle, prepare, check
    ("new_idle", |l, c, _| watcher::new(l, c, Kind::Idle)),
    ("idle_start", |l, c, a| watcher::start(l, c, a, Kind::Idle)),
    ("idle_stop", |l, c, a| watcher::stop(l, c, a, Kind::Idle)),
    ("new_prepare", |l, c, _| watcher::new(l, c, Kind::Prepare)),
    ("prepare_start", |l, c, a| {
        watcher::start(l, c, a, Kind::Prepare)
    }),
    ("prepare_stop", |l, c, a| {
        watcher::stop(l, c, a, Kind::Prepare)
    }),
    ("new_check", |l, c, _| watcher::new(l, c, Kind::Check)),
    ("check_start", |l, c, a| {
        watcher::start(l, c, a, Kind::Check)
    }),
    ("check_stop", |l, c, a| watcher::stop(l, c, a, Kind::Check)),
    // stream
    ("listen", stream::listen),
    ("accept", stream::accept),
    ("read_start", stream::read_start),
    ("read_stop", stream::read_stop),
    ("write", stream::write),
    ("write2", stream::write2),
    ("try_write", stream::try_write),
    ("write_batched", stream::write_batched),
    ("shutdown", stream::shutdown),
    ("is_readable", stream::is_readable),
    ("is_writable", stream::is_writable),
    ("stream_get_write_queue_size", stream::write_queue_size),
    // tcp
    ("new_tcp", tcp::new_tcp),
    ("tcp_open", tcp::tcp_open),
    ("tcp_bind", tcp::tcp_bind),
    ("tcp_connect", tcp::tcp_connect),
    ("tcp_nodelay", tcp::tcp_nodelay),
    ("tcp_keepalive", tcp::tcp_keepalive),
    ("tcp_simultaneous_accepts", tcp::tcp_simultaneous_accepts),
    ("tcp_getsockname", tcp::tcp_getsockname),
    ("tcp_getpeername", tcp::tcp_getpeername),
    ("tcp_close_reset", tcp::tcp_close_reset),
    ("tcp_write_queue_size", stream::write_queue_size),
    // pipe
    ("new_pipe", pipe::new_pipe),
    ("pipe_open", pipe::pipe_open),
    ("pipe_bind", pipe::pipe_bind),
    ("pipe_connect", pipe::pipe_connect),
    ("pipe_getsockname", pipe::pipe_getsockname),
    ("pipe_getpeername", pipe::pipe_getpeername),
    ("pipe_chmod", pipe::pipe_chmod),
    ("pipe_pending_count", pipe::pipe_pending_count),
    ("pipe_pending_type", pipe::pipe_pending_type),
    ("pipe", pipe::pipe),
    ("socketpair", pipe::socketpair),
    // process
    ("spawn", process::spawn),
    ("process_kill", process::process_kill),
    ("process_get_pid", process::process_get_pid),
    (
        "disable_stdio_inheritance",
        process::disable_stdio_inheritance,
    ),
    // udp
    ("new_udp", udp::new_udp),
    ("udp_open", udp::udp_open),
    ("udp_bind", udp::udp_bind),
    ("udp_connect", udp::udp_connect),
    ("udp_getsockname", udp::udp_getsockname),
    ("udp_getpeername", udp::udp_getpeername),
    ("udp_send", udp::udp_send),
    ("udp_try_send", udp::udp_try_send),
    ("udp_recv_start", udp::udp_recv_start),
    ("udp_recv_stop", udp::udp_recv_stop),
    ("udp_set_broadcast", udp::udp_set_broadcast),
    ("udp_set_ttl", udp::udp_set_ttl),
    ("udp_set_multicast_loop", udp::udp_set_multicast_loop),
    ("udp_set_multicast_ttl", udp::udp_set_multicast_ttl),
    (
        "udp_set_multicast_interface",
        udp::udp_set_multicast_interface,
    ),
    ("udp_set_membership", udp::udp_set_membership),
    ("udp_get_send_queue_size", udp::udp_get_send_queue_size),
    ("udp_get_send_queue_count", udp::udp_get_send_queue_count),
    // async
    ("new_async", async_handle::new_async),
    ("async_send", async_handle::async_send),
    // poll
    ("new_poll", poll::new_poll),
    ("new_socket_poll", poll::new_poll),
    ("poll_start", poll::poll_start),
    ("poll_stop", poll::poll_stop),
    // tty
    ("new_tty", tty::new_tty),
    ("tty_get_winsize", tty::tty_get_winsize),
    ("tty_set_mode", tty::tty_set_mode),
    ("tty_reset_mode", tty::tty_reset_mode),
    ("tty_set_vterm_state", tty::tty_set_vterm_state),
    ("guess_handle", tty::guess_handle),
    // dns
    ("getaddrinfo", dns::getaddrinfo),
    ("getnameinfo", dns::getnameinfo),
    // signal
    ("new_signal", signal::new_signal),
    ("signal_start", signal::signal_start),
    ("signal_start_oneshot", signal::signal_start_oneshot),
    ("signal_stop", signal::signal_stop),
    ("kill", signal::kill),
    // misc
    ("version", misc::version),
    ("version_string", misc::version_string),
    ("cwd", misc::cwd),
    ("chdir", misc::chdir),
    ("os_getpid", misc::os_getpid),
    ("os_getppid", misc::os_getppid),
    ("os_gethostname", misc::os_gethostname),
    ("os_uname", misc::os_uname),
    ("os_getenv", misc::os_getenv),
    ("os_setenv", misc::os_setenv),
    ("os_unsetenv", misc::os_unsetenv),
    ("os_environ", misc::os_environ),
    ("os_homedir", misc::os_homedir),
    ("os_tmpdir", misc::os_tmpdir),
    ("getuid", misc::getuid),
    ("getgid", misc::getgid),
    ("getrusage", misc::getrusage),
    ("resident_set_memory", misc::resident_set_memory),
    ("available_parallelism", misc::available_parallelism),
    ("uptime", misc::uptime),
    ("sleep", misc::sleep),
    ("gettimeofday", misc::gettimeofday),
    ("exepath", misc::exepath),
    ("get_total_memory", misc::get_total_memory),
    ("get_free_memory", misc::get_free_memory),
    ("loadavg", misc::loadavg),
    ("cpu_info", misc::cpu_info),
    ("interface_addresses", misc::interface_addresses),
    ("random", misc::random),
    // file system
    ("fs_stat", fs::fs_stat),
    ("fs_lstat", fs::fs_lstat),
    ("fs_realpath", fs::fs_realpath),
    ("fs_chmod", fs::fs_chmod),
    ("fs_unlink", fs::fs_unlink),
    ("fs_scandir", fs::fs_scandir),
    ("fs_scandir_next", fs::fs_scandir_next),
    ("fs_mkdir", fs::fs_mkdir),
    ("fs_rmdir", fs::fs_rmdir),
    ("fs_rename", fs::fs_rename),
    // extensions
    ("sendfile", stream::sendfile),
    ("http_parse_head", http_parser::http_parse_head),
    ("http_parse_request", http_parser::http_parse_request),
    ("http_response_headers", http_parser::http_response_headers),
    ("new_deflate", deflate::new_deflate),
    ("new_inflate", deflate::new_inflate),
];

/// Methods every handle has, under the module function's name.
const HANDLE_METHODS: &[&str] = &[
    "close",
    "is_active",
    "is_closing",
    "ref",
    "unref",
    "has_ref",
    "fileno",
    "send_buffer_size",
    "recv_buffer_size",
];

/// Methods every stream (TCP, pipe, TTY) has, under the module function's name.
const STREAM_METHODS: &[&str] = &[
    "listen",
    "accept",
    "read_start",
    "read_stop",
    "write",
    "write2",
    "try_write",
    "write_batched",
    "shutdown",
    "is_readable",
    "is_writable",
    "sendfile",
];

const KINDS: &[Kind] = &[
    Kind::Async,
    Kind::Check,
    Kind::Idle,
    Kind::Pipe,
    Kind::Poll,
    Kind::Prepare,
    Kind::Process,
    Kind::Tcp,
    Kind::Timer,
    Kind::Tty,
    Kind::Udp,
    Kind::Signal,
];

fn handle_tostring(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.any_handle(1)?;
    format!("uv_{}_t: {:p}", h.kind.name(), ud.to_pointer()).into_lua_multi(lua)
}

/// `__close`: closes the handle unless that was done already.
fn handle_close_meta(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.any_handle(1)?;
    if core.st()?.slots[h.id].closing {
        return Ok(LuaMultiValue::new());
    }
    let only_handle = Args::new(
        lua,
        "close",
        LuaMultiValue::from_vec(vec![LuaValue::UserData(ud.clone())]),
    );
    handle::close(lua, core, &only_handle)
}

/// luv's metatable for one handle type: `__name` "uv_timer", methods named as luv names them (the
/// module function without its type prefix: `timer_start` is `t:start`), and the metamethods.
fn handle_metatable(lua: &Lua, core: &Rc<Core>, uv: &LuaTable, kind: Kind) -> LuaResult<LuaTable> {
    let index = lua.create_table()?;
    let mut names: Vec<&str> = HANDLE_METHODS.to_vec();
    if kind.is_stream() {
        names.extend_from_slice(STREAM_METHODS);
        index.raw_set(
            "get_write_queue_size",
            uv.raw_get::<LuaFunction>("stream_get_write_queue_size")?,
        )?;
    }
    for name in names {
        index.raw_set(name, uv.raw_get::<LuaFunction>(name)?)?;
    }
    index.raw_set("get_type", uv.raw_get::<LuaFunction>("handle_get_type")?)?;
    let prefix = format!("{}_", kind.name());
    for &(name, _) in FUNCTIONS {
        if let Some(method) = name.strip_prefix(&prefix) {
            index.raw_set(method, uv.raw_get::<LuaFunction>(name)?)?;
        }
    }
    let mt = lua.create_table()?;
    mt.raw_set("__name", format!("uv_{}", kind.name()))?;
    mt.raw_set("__index", index)?;
    mt.raw_set(
        "__tostring",
        export(lua, core, "tostring", handle_tostring)?,
    )?;
    mt.raw_set("__close", export(lua, core, "close", handle_close_meta)?)?;
    // SAFETY: handle_gc follows the lua_CFunction contract and only reads its own userdata.
    mt.raw_set("__gc", unsafe { lua.create_c_function(handle::handle_gc)? })?;
    Ok(mt)
}

/// A write to a closed peer must fail with EPIPE, not kill the process: sendfile(2) and writes to
/// pipes have no MSG_NOSIGNAL. As Python, Node and nginx do, SIGPIPE is ignored unless the program
/// installed its own disposition.
fn ignore_sigpipe() {
    // SAFETY: querying and setting a signal disposition with valid sigaction structs.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
}

/// Builds the module table for a Lua state.
#[cfg_attr(feature = "module", mlua::lua_module)]
pub fn luvrs(lua: &Lua) -> LuaResult<LuaTable> {
    ignore_sigpipe();
    let mut guard = None;
    // SAFETY: module setup, no allocation of the state in progress.
    unsafe { lua.exec_raw::<()>((), |l| guard = Some(alloc::install(l)))? };
    if let Some(guard) = guard {
        lua.set_named_registry_value("luvrs.alloc", lua.create_any_userdata(guard)?)?;
    }
    let weak = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.set("__mode", "v")?;
    weak.set_metatable(Some(mt))?;
    let st =
        State::new().map_err(|e| error::misuse(format!("luvrs: cannot create the poller: {e}")))?;
    lua.register_userdata_type::<Req>(|reg| {
        reg.add_meta_method(LuaMetaMethod::ToString, |_, r, ()| {
            Ok(format!("uv_{}_t: {:p}", r.0, r as *const Req))
        });
    })?;
    let reqs = lua.create_table()?;
    for kind in [
        "write",
        "connect",
        "shutdown",
        "udp_send",
        "getaddrinfo",
        "getnameinfo",
    ] {
        reqs.raw_set(kind, lua.create_any_userdata(Req(kind))?)?;
    }
    let core = Rc::new(Core {
        st: RefCell::new(st),
        garbage: RefCell::new(Vec::new()),
        weak,
        reqs,
        metatables: RefCell::new(Vec::new()),
        write_req: std::cell::Cell::new(0),
        created: std::cell::Cell::new(0),
        deliver: std::cell::OnceCell::new(),
    });
    // The closure needs the core's final address, so it is made after the core.
    let _ = core.deliver.set(event_loop::make_deliver(lua, &core)?);

    // Handles point at the core without owning it; one reference is kept for good so it outlives
    // every handle, however late Lua collects them.
    std::mem::forget(core.clone());

    let uv = lua.create_table()?;
    for &(name, f) in FUNCTIONS {
        uv.raw_set(name, export(lua, &core, name, f)?)?;
    }

    fast::install(lua, &core, &uv)?;
    for &kind in KINDS {
        let mt = handle_metatable(lua, &core, &uv, kind)?;
        core.metatables.borrow_mut().push(mt.to_pointer() as usize);
        lua.set_named_registry_value(&handle::metatable_key(kind), mt)?;
    }
    let codec_methods =
        |write: (&'static str, Fun), reset: (&'static str, Fun)| -> LuaResult<LuaTable> {
            let index = lua.create_table()?;
            index.raw_set("write", export(lua, &core, write.0, write.1)?)?;
            index.raw_set("reset", export(lua, &core, reset.0, reset.1)?)?;
            Ok(index)
        };
    let index = codec_methods(
        ("deflate_write", deflate::deflate_write),
        ("deflate_reset", deflate::deflate_reset),
    )?;
    lua.register_userdata_type::<deflate::Deflater>(|reg| {
        reg.add_meta_field("__index", index);
        reg.add_meta_function(LuaMetaMethod::ToString, |_, _: LuaAnyUserData| {
            Ok("luvrs_deflate")
        });
    })?;
    let index = codec_methods(
        ("inflate_write", deflate::inflate_write),
        ("inflate_reset", deflate::inflate_reset),
    )?;
    lua.register_userdata_type::<deflate::Inflater>(|reg| {
        reg.add_meta_field("__index", index);
        reg.add_meta_function(LuaMetaMethod::ToString, |_, _: LuaAnyUserData| {
            Ok("luvrs_inflate")
        });
    })?;
    let write_req: LuaValue = core.reqs.raw_get("write")?;
    // SAFETY: luaL_ref pops the value exec_raw pushed and leaves the reference number.
    let r: i64 = unsafe {
        lua.exec_raw(write_req, |l| {
            ffi::lua_pushinteger(l, ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX) as _)
        })?
    };
    core.write_req.set(r as i32);

    uv.raw_set("luvrs_version", env!("CARGO_PKG_VERSION"))?;
    Ok(uv)
}
