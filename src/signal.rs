//! Signal handles. The OS handler only writes the signal number to a self-pipe; the loop reads the
//! pipe in its I/O phase and calls every started handle for that signal.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, ok0};
use crate::event_loop::{call, Core, State, SIGNAL_TOKEN};
use crate::handle::{create, Data, Kind};
use mio::unix::SourceFd;
use mio::Interest;
use mlua::prelude::*;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};

/// The write end of the self-pipe, for the async-signal-safe handler.
static PIPE_W: AtomicI32 = AtomicI32::new(-1);

const NAMES: &[(&str, i32)] = &[
    ("sighup", libc::SIGHUP),
    ("sigint", libc::SIGINT),
    ("sigquit", libc::SIGQUIT),
    ("sigill", libc::SIGILL),
    ("sigtrap", libc::SIGTRAP),
    ("sigabrt", libc::SIGABRT),
    ("sigbus", libc::SIGBUS),
    ("sigfpe", libc::SIGFPE),
    ("sigkill", libc::SIGKILL),
    ("sigusr1", libc::SIGUSR1),
    ("sigsegv", libc::SIGSEGV),
    ("sigusr2", libc::SIGUSR2),
    ("sigpipe", libc::SIGPIPE),
    ("sigalrm", libc::SIGALRM),
    ("sigterm", libc::SIGTERM),
    ("sigchld", libc::SIGCHLD),
    ("sigcont", libc::SIGCONT),
    ("sigstop", libc::SIGSTOP),
    ("sigtstp", libc::SIGTSTP),
    ("sigttin", libc::SIGTTIN),
    ("sigttou", libc::SIGTTOU),
    ("sigurg", libc::SIGURG),
    ("sigxcpu", libc::SIGXCPU),
    ("sigxfsz", libc::SIGXFSZ),
    ("sigvtalrm", libc::SIGVTALRM),
    ("sigprof", libc::SIGPROF),
    ("sigwinch", libc::SIGWINCH),
    ("sigio", libc::SIGIO),
    ("sigpwr", libc::SIGPWR),
    ("sigsys", libc::SIGSYS),
];

pub fn signame(n: i32) -> Option<&'static str> {
    NAMES.iter().find(|(_, v)| *v == n).map(|(k, _)| *k)
}

/// A signal argument: a name ("sigint", "SIGINT", "int") or a number.
pub fn signum(a: &Args, i: usize) -> LuaResult<i32> {
    match a.get(i) {
        LuaValue::Integer(n) if (1..65).contains(n) => Ok(*n as i32),
        LuaValue::String(s) => {
            let lower = s.to_str()?.to_ascii_lowercase();
            let key = if lower.starts_with("sig") {
                lower
            } else {
                format!("sig{lower}")
            };
            NAMES
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| a.invalid(i, &format!("unknown signal '{}'", s.to_string_lossy())))
        }
        _ => Err(a.bad(i, "signal name or number")),
    }
}

pub struct Signal {
    pub signum: i32,
    pub cb: Option<LuaFunction>,
    pub oneshot: bool,
}

#[derive(Default)]
pub struct Signals {
    pipe_r: Option<OwnedFd>,
    /// Started handles per signal number; the OS handler is installed while this is non-zero.
    installed: HashMap<i32, usize>,
    /// Signals received and not yet dispatched.
    pending: Vec<i32>,
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_W.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; errno is saved and restored around it.
        unsafe {
            let saved = *libc::__errno_location();
            libc::write(fd, (&b as *const u8).cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

fn ensure_pipe(st: &mut State) -> std::io::Result<()> {
    if st.signals.pipe_r.is_some() {
        return Ok(());
    }
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns; the write end lives for
    // the rest of the process so the handler never writes to a closed descriptor.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    st.poll.registry().register(
        &mut SourceFd(&r.as_raw_fd()),
        SIGNAL_TOKEN,
        Interest::READABLE,
    )?;
    let old = PIPE_W.swap(fds[1], Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: the previous write end belonged to a loop that is gone.
        unsafe { libc::close(old) };
    }
    st.signals.pipe_r = Some(r);
    Ok(())
}

fn install(signum: i32, handler: libc::sighandler_t) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler only does async-signal-safe work.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(signum, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn new_signal(lua: &Lua, core: &Rc<Core>, _a: &Args) -> LuaResult<LuaMultiValue> {
    create(
        lua,
        core,
        Kind::Signal,
        Data::Signal(Signal {
            signum: 0,
            cb: None,
            oneshot: false,
        }),
    )?
    .into_lua_multi(lua)
}

fn sig(st: &mut State, id: usize) -> &mut Signal {
    match &mut st.slots[id].data {
        Data::Signal(s) => s,
        _ => unreachable!("slot is not a signal"),
    }
}

fn start_impl(lua: &Lua, core: &Rc<Core>, a: &Args, oneshot: bool) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Signal)?;
    let n = signum(a, 2)?;
    let cb = a.opt_func(3)?;
    let mut st = core.st()?;
    if st.slots[h.id].closing {
        return fail(lua, libc::EINVAL);
    }
    if n == libc::SIGKILL || n == libc::SIGSTOP {
        return fail(lua, libc::EINVAL);
    }
    // The new signal first, as libuv does: if its handler cannot be installed, the handle goes on
    // watching the old one.
    if let Err(e) = watch(&mut st, n) {
        return fail(lua, errno_of(&e));
    }
    stop(&mut st, h.id);
    let s = sig(&mut st, h.id);
    s.signum = n;
    if cb.is_some() {
        s.cb = cb;
    }
    s.oneshot = oneshot;
    st.set_active(h.id, ud, true);
    ok0(lua)
}

pub fn signal_start(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    start_impl(lua, core, a, false)
}

pub fn signal_start_oneshot(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    start_impl(lua, core, a, true)
}

pub fn signal_stop(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (ud, h) = a.handle(1, Kind::Signal)?;
    let mut st = core.st()?;
    stop(&mut st, h.id);
    if !st.slots[h.id].closing {
        st.set_active(h.id, ud, false);
    }
    ok0(lua)
}

/// Stops watching: the OS handler goes back to the default when no handle wants the signal.
pub fn stop(st: &mut State, id: usize) {
    if !st.slots[id].active {
        return;
    }
    let n = sig(st, id).signum;
    unwatch(st, n);
}

/// Installs the handler for `n` unless it is in place, and counts one more watcher of `n` (a
/// signal handle, or the loop itself: SIGCHLD for processes).
pub fn watch(st: &mut State, n: i32) -> std::io::Result<()> {
    ensure_pipe(st)?;
    if st.signals.installed.get(&n).copied().unwrap_or(0) == 0 {
        install(
            n,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )?;
    }
    *st.signals.installed.entry(n).or_insert(0) += 1;
    Ok(())
}

/// Undoes one `watch`.
pub fn unwatch(st: &mut State, n: i32) {
    if let Some(c) = st.signals.installed.get_mut(&n) {
        *c -= 1;
        if *c == 0 {
            st.signals.installed.remove(&n);
            let _ = install(n, libc::SIG_DFL);
        }
    }
}

/// Reads the signal numbers the handler wrote.
pub fn drain(st: &mut State) {
    let Some(r) = &st.signals.pipe_r else { return };
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: r is the open, non-blocking read end of the self-pipe; buf is valid for writes.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        st.signals
            .pending
            .extend(buf[..n as usize].iter().map(|&b| b as i32));
    }
}

/// Calls every started handle for each signal received, in handle creation order.
pub fn dispatch(core: &Rc<Core>) -> LuaResult<()> {
    let received = std::mem::take(&mut core.st()?.signals.pending);
    if received.contains(&libc::SIGCHLD) {
        crate::process::reap(core)?;
    }
    for n in received {
        let mut ids: Vec<(u64, usize)> = {
            let st = core.st()?;
            st.slots
                .iter()
                .filter(|(_, s)| s.active && matches!(&s.data, Data::Signal(g) if g.signum == n))
                .map(|(id, s)| (s.seq, id))
                .collect()
        };
        ids.sort_unstable();
        for (_, id) in ids {
            let (cb, _keep) = {
                let mut st = core.st()?;
                if !st.slots.get(id).is_some_and(|s| s.active) {
                    continue;
                }
                let keep = st.slots[id].ud.clone();
                let g = sig(&mut st, id);
                let cb = g.cb.clone();
                if g.oneshot {
                    stop(&mut st, id);
                    st.slots[id].active = false;
                    st.sync(id);
                }
                (cb, keep)
            };
            if let Some(cb) = cb {
                call(core, &cb, signame(n).unwrap_or("unknown"))?;
            }
        }
    }
    Ok(())
}

/// The signal argument of `kill` and `process_kill`: SIGTERM when absent; 0 probes whether the
/// process exists.
pub fn kill_signal(a: &Args, i: usize) -> LuaResult<i32> {
    match a.get(i) {
        LuaValue::Nil => Ok(libc::SIGTERM),
        LuaValue::Integer(0) => Ok(0),
        _ => signum(a, i),
    }
}

pub fn kill(lua: &Lua, _core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let pid = a.int(1)?;
    let n = kill_signal(a, 2)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, n) } != 0 {
        return fail(lua, last_errno());
    }
    ok0(lua)
}

#[cfg(test)]
mod tests {
    /// The disposition of `n` is luvrs's handler.
    fn handled(n: i32) -> bool {
        // SAFETY: queries a disposition into a zeroed sigaction.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(n, std::ptr::null(), &mut old);
            old.sa_sigaction == super::on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
        }
    }

    #[test]
    fn a_refused_start_keeps_the_old_signal_watched() {
        let lua = mlua::Lua::new();
        lua.globals()
            .set("uv", crate::luvrs(&lua).expect("module"))
            .expect("global");
        lua.load(
            r#"
            a, b = uv.new_signal(), uv.new_signal()
            assert(uv.signal_start(a, "sigusr2", function() end) == 0)
            assert(uv.signal_start(b, "sigusr2", function() end) == 0)
            -- glibc keeps signal 32 for itself: sigaction refuses it.
            assert(uv.signal_start(a, 32, function() end) == nil)
            assert(uv.is_active(a))
            assert(uv.signal_stop(a) == 0)
            "#,
        )
        .exec()
        .expect("chunk");
        assert!(handled(libc::SIGUSR2), "b still watches SIGUSR2");
        lua.load("assert(uv.signal_stop(b) == 0)")
            .exec()
            .expect("chunk");
        assert!(!handled(libc::SIGUSR2));
    }
}
