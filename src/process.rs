//! Child processes: `spawn` (fork + exec, with stdio wiring), `process_kill`, and reaping on
//! SIGCHLD through the signal self-pipe.

use crate::args::Args;
use crate::error::{errno_of, fail, last_errno, ok0};
use crate::event_loop::{call, Core, State};
use crate::handle::{create, id_of, Data, Kind};
use crate::stream::adopt;
use mlua::prelude::*;
use socket2::Socket;
use std::ffi::CString;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;

pub struct Process {
    pub pid: i32,
    pub cb: Option<LuaFunction>,
    /// Reaped: the pid is no longer ours to signal.
    pub exited: bool,
}

fn proc_of(st: &mut State, id: usize) -> &mut Process {
    match &mut st.slots[id].data {
        Data::Process(p) => p,
        _ => unreachable!("slot is not a process"),
    }
}

/// What a child's descriptor `i` becomes.
enum Stdio {
    Ignore,
    Fd(RawFd),
    /// A pipe handle without a descriptor: a socketpair whose far end the child gets.
    Create(usize),
}

fn cstr(a: &Args, i: usize, s: &[u8]) -> LuaResult<CString> {
    CString::new(s).map_err(|_| a.invalid(i, "string contains a NUL byte"))
}

fn strings(a: &Args, t: &LuaTable, i: usize) -> LuaResult<Vec<CString>> {
    let mut v = Vec::new();
    for j in 1..=t.raw_len() {
        match t.raw_get::<LuaValue>(j)? {
            LuaValue::String(s) => v.push(cstr(a, i, &s.as_bytes())?),
            LuaValue::Integer(n) => v.push(cstr(a, i, n.to_string().as_bytes())?),
            LuaValue::Number(n) => v.push(cstr(a, i, n.to_string().as_bytes())?),
            _ => return Err(a.invalid(i, "args and env must be strings")),
        }
    }
    Ok(v)
}

pub fn spawn(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let path = a.string(1)?;
    let opts = match a.get(2) {
        LuaValue::Table(t) => t.clone(),
        _ => return Err(a.bad(2, "table")),
    };
    let cb = a.opt_func(3)?;
    let file = cstr(a, 1, &path.as_bytes())?;
    let mut argv = vec![file.clone()];
    if let Some(t) = opts.get::<Option<LuaTable>>("args")? {
        argv.extend(strings(a, &t, 2)?);
    }
    let env = match opts.get::<Option<LuaTable>>("env")? {
        Some(t) => Some(strings(a, &t, 2)?),
        None => None,
    };
    let cwd = match opts.get::<Option<LuaString>>("cwd")? {
        Some(s) => Some(cstr(a, 2, &s.as_bytes())?),
        None => None,
    };
    let detached = opts.get::<Option<bool>>("detached")?.unwrap_or(false);
    let uid = opts.get::<Option<i64>>("uid")?;
    let gid = opts.get::<Option<i64>>("gid")?;
    let mut stdio = Vec::new();
    if let Some(t) = opts.get::<Option<LuaTable>>("stdio")? {
        let n = t.raw_len().max(
            t.clone()
                .pairs::<i64, LuaValue>()
                .filter_map(|r| r.ok().map(|(k, _)| k as usize))
                .max()
                .unwrap_or(0),
        );
        for j in 1..=n {
            match t.raw_get::<LuaValue>(j)? {
                LuaValue::Nil => stdio.push(Stdio::Ignore),
                LuaValue::Integer(fd) => stdio.push(Stdio::Fd(fd as RawFd)),
                LuaValue::UserData(ud) => {
                    let h = crate::handle::lookup(&ud).ok_or_else(|| {
                        a.invalid(2, "stdio entries must be fds or stream handles")
                    })?;
                    if !h.kind.is_stream() {
                        return Err(a.invalid(2, "stdio entries must be fds or stream handles"));
                    }
                    let fd = core.st()?.slots[h.id].stream().fd();
                    match fd {
                        Some(fd) => stdio.push(Stdio::Fd(fd)),
                        None if h.kind == Kind::Pipe => stdio.push(Stdio::Create(h.id)),
                        None => return fail(lua, libc::EINVAL),
                    }
                }
                _ => return Err(a.invalid(2, "stdio entries must be fds or stream handles")),
            }
        }
    }
    while stdio.len() < 3 {
        stdio.push(Stdio::Ignore);
    }

    // Descriptors the child gets, made before forking; parent ends are adopted after.
    let mut child_fds: Vec<RawFd> = Vec::with_capacity(stdio.len());
    let mut parent_ends: Vec<(usize, RawFd)> = Vec::new();
    let mut to_close: Vec<RawFd> = Vec::new();
    let cleanup = |fds: &[RawFd]| {
        for &fd in fds {
            // SAFETY: closing descriptors this call created.
            unsafe { libc::close(fd) };
        }
    };
    for s in &stdio {
        match s {
            Stdio::Ignore => child_fds.push(-1),
            Stdio::Fd(fd) => child_fds.push(*fd),
            Stdio::Create(id) => {
                let mut fds = [0; 2];
                // SAFETY: fds is a valid array of two ints for socketpair to fill.
                let r = unsafe {
                    libc::socketpair(
                        libc::AF_UNIX,
                        libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                        0,
                        fds.as_mut_ptr(),
                    )
                };
                if r != 0 {
                    let e = last_errno();
                    cleanup(&to_close);
                    return fail(lua, e);
                }
                parent_ends.push((*id, fds[0]));
                to_close.push(fds[0]);
                to_close.push(fds[1]);
                child_fds.push(fds[1]);
            }
        }
    }

    let envp: Option<Vec<*const libc::c_char>> = env.as_ref().map(|e| {
        e.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    });
    let argvp: Vec<*const libc::c_char> = argv
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let devnull = c"/dev/null";

    // SIGCHLD must be watched before the child can exit.
    {
        let mut st = core.st()?;
        if let Err(e) = crate::signal::watch(&mut st, libc::SIGCHLD) {
            cleanup(&to_close);
            return fail(lua, errno_of(&e));
        }
    }
    let mut errpipe = [0; 2];
    // SAFETY: errpipe is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(errpipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        let e = last_errno();
        cleanup(&to_close);
        crate::signal::unwatch(&mut *core.st()?, libc::SIGCHLD);
        return fail(lua, e);
    }

    // SAFETY: fork in a single-threaded-at-this-point caller; the child only makes
    // async-signal-safe calls on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the child; see above.
        unsafe {
            child(
                &child_fds,
                errpipe[1],
                devnull.as_ptr(),
                cwd.as_ref().map(|c| c.as_ptr()),
                detached,
                uid,
                gid,
                file.as_ptr(),
                argvp.as_ptr(),
                envp.as_ref().map(|e| e.as_ptr()),
            )
        }
    }
    // SAFETY: closing the write end in the parent.
    unsafe { libc::close(errpipe[1]) };
    if pid < 0 {
        let e = last_errno();
        // SAFETY: closing the read end this call created.
        unsafe { libc::close(errpipe[0]) };
        cleanup(&to_close);
        crate::signal::unwatch(&mut *core.st()?, libc::SIGCHLD);
        return fail(lua, e);
    }
    let mut code: i32 = 0;
    // SAFETY: reading an int the child may have written before exec failed.
    let n = loop {
        let n = unsafe {
            libc::read(
                errpipe[0],
                (&mut code as *mut i32).cast(),
                std::mem::size_of::<i32>(),
            )
        };
        if n < 0 && last_errno() == libc::EINTR {
            continue;
        }
        break n;
    };
    // SAFETY: closing the read end this call created.
    unsafe { libc::close(errpipe[0]) };
    // Child ends belong to the child now.
    for (i, s) in stdio.iter().enumerate() {
        if matches!(s, Stdio::Create(_)) {
            // SAFETY: closing the child's end of a socketpair this call created.
            unsafe { libc::close(child_fds[i]) };
        }
    }
    if n == std::mem::size_of::<i32>() as isize {
        // exec failed: the child has exited; reap it now.
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        for (_, fd) in &parent_ends {
            // SAFETY: closing the parent ends this call created.
            unsafe { libc::close(*fd) };
        }
        crate::signal::unwatch(&mut *core.st()?, libc::SIGCHLD);
        return fail(lua, code);
    }
    {
        let mut st = core.st()?;
        for (id, fd) in parent_ends {
            // SAFETY: the parent end of a new socketpair, owned by nothing else.
            let sock = unsafe { Socket::from_raw_fd(fd) };
            let _ = sock.set_nonblocking(true);
            if adopt(&mut st, id, sock).is_ok() {
                let s = st.slots[id].stream();
                s.readable = true;
                s.writable = true;
            }
        }
    }
    let ud = create(
        lua,
        core,
        Kind::Process,
        Data::Process(Process {
            pid,
            cb,
            exited: false,
        }),
    )?;
    let id = id_of(&ud)?;
    {
        let mut st = core.st()?;
        st.set_active(id, &ud, true);
        // The child may have exited already; its SIGCHLD byte is in the pipe, and reaping
        // happens by pid on the next signal dispatch.
    }
    Ok(LuaMultiValue::from_vec(vec![
        LuaValue::UserData(ud),
        LuaValue::Integer(pid as i64),
    ]))
}

/// The child side of `spawn`: wire stdio, reset signals, exec; report a failure through `errfd`.
#[allow(clippy::too_many_arguments)]
unsafe fn child(
    fds: &[RawFd],
    errfd: RawFd,
    devnull: *const libc::c_char,
    cwd: Option<*const libc::c_char>,
    detached: bool,
    uid: Option<i64>,
    gid: Option<i64>,
    file: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: Option<*const *const libc::c_char>,
) -> ! {
    // SAFETY: only async-signal-safe calls on memory prepared before fork.
    unsafe {
        let fail = |e: i32| -> ! {
            libc::write(errfd, (&e as *const i32).cast(), std::mem::size_of::<i32>());
            libc::_exit(127);
        };
        let errno = || *libc::__errno_location();
        if detached {
            libc::setsid();
        }
        // A source descriptor may sit at a target number lower than its own slot: move every
        // source above the stdio range first (as libuv does), then dup2 into place.
        let n = fds.len() as i32;
        let mut moved = [-1i32; 64];
        for (i, &fd) in fds.iter().enumerate().take(64) {
            if fd >= 0 && fd < n && fd != i as i32 {
                let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, n);
                if d < 0 {
                    fail(errno());
                }
                moved[i] = d;
            } else {
                moved[i] = fd;
            }
        }
        for (i, &fd) in moved.iter().enumerate().take(fds.len().min(64)) {
            let i = i as i32;
            let src = if fd < 0 {
                if i > 2 {
                    continue;
                }
                let flags = if i == 0 { libc::O_RDONLY } else { libc::O_RDWR };
                let d = libc::open(devnull, flags);
                if d < 0 {
                    fail(errno());
                }
                d
            } else {
                fd
            };
            if src == i {
                let fl = libc::fcntl(i, libc::F_GETFD);
                libc::fcntl(i, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            } else if libc::dup2(src, i) < 0 {
                fail(errno());
            }
            // Inherited stdio must block, as programs expect.
            let fl = libc::fcntl(i, libc::F_GETFL);
            if fl >= 0 && i <= 2 {
                libc::fcntl(i, libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
        if let Some(c) = cwd {
            if libc::chdir(c) != 0 {
                fail(errno());
            }
        }
        if let Some(g) = gid {
            if libc::setgid(g as libc::gid_t) != 0 {
                fail(errno());
            }
        }
        if let Some(u) = uid {
            if libc::setuid(u as libc::uid_t) != 0 {
                fail(errno());
            }
        }
        // Default dispositions and an empty mask, as libuv gives its children.
        for s in 1..32 {
            if s == libc::SIGKILL || s == libc::SIGSTOP {
                continue;
            }
            libc::signal(s, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        match envp {
            Some(e) => {
                libc::execvpe(file, argv, e);
            }
            None => {
                libc::execvp(file, argv);
            }
        }
        fail(errno());
    }
}

/// Reaps every exited child that belongs to a process handle and calls its exit callback.
pub fn reap(core: &Rc<Core>) -> LuaResult<()> {
    let ids: Vec<(usize, i32)> = {
        let st = core.st()?;
        st.slots
            .iter()
            .filter_map(|(id, s)| match &s.data {
                Data::Process(p) if !p.exited => Some((id, p.pid)),
                _ => None,
            })
            .collect()
    };
    for (id, pid) in ids {
        let mut status = 0;
        // SAFETY: waiting without blocking for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r != pid {
            continue;
        }
        let (code, sig) = if libc::WIFEXITED(status) {
            (libc::WEXITSTATUS(status) as i64, 0)
        } else if libc::WIFSIGNALED(status) {
            (0, libc::WTERMSIG(status) as i64)
        } else {
            continue;
        };
        let (cb, _keep) = {
            let mut st = core.st()?;
            let keep = st.slots[id].ud.clone();
            let p = proc_of(&mut st, id);
            p.exited = true;
            let cb = p.cb.clone();
            crate::signal::unwatch(&mut st, libc::SIGCHLD);
            if !st.slots[id].closing {
                st.slots[id].active = false;
                st.sync(id);
            }
            (cb, keep)
        };
        if let Some(cb) = cb {
            call(core, &cb, (code, sig))?;
        }
    }
    Ok(())
}

pub fn process_kill(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Process)?;
    let n = crate::signal::kill_signal(a, 2)?;
    let pid = {
        let mut st = core.st()?;
        let p = proc_of(&mut st, h.id);
        if p.exited {
            return fail(lua, libc::ESRCH);
        }
        p.pid
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, n) } != 0 {
        return fail(lua, last_errno());
    }
    ok0(lua)
}

pub fn process_get_pid(lua: &Lua, core: &Rc<Core>, a: &Args) -> LuaResult<LuaMultiValue> {
    let (_, h) = a.handle(1, Kind::Process)?;
    let pid = proc_of(&mut *core.st()?, h.id).pid;
    (pid as i64).into_lua_multi(lua)
}

/// As libuv: every descriptor above stdio gets close-on-exec, so children see only what `stdio`
/// gives them.
pub fn disable_stdio_inheritance(
    _lua: &Lua,
    _core: &Rc<Core>,
    _a: &Args,
) -> LuaResult<LuaMultiValue> {
    for fd in 3..1024 {
        // SAFETY: F_GETFD/F_SETFD on arbitrary numbers; closed ones just fail.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFD);
            if fl >= 0 {
                libc::fcntl(fd, libc::F_SETFD, fl | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(LuaMultiValue::new())
}
