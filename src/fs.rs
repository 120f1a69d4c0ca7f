//! The file-system calls a server and its reloader need (stat, realpath, chmod, unlink, scandir,
//! mkdir, rmdir, rename), in luv's shapes: without a callback they return at once; with one, the
//! callback gets `(err, result)` on a later tick.

use crate::args::Args;
use crate::error::{describe, errno_of, Errno};
use crate::event_loop::Core;
use mlua::prelude::*;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

type Ret = LuaResult<LuaMultiValue>;

/// luv's fs error: `"ENOENT: no such file or directory: /the/path"`.
fn error_text(code: Errno, path: &str) -> (String, &'static str) {
    let (name, msg) = describe(code);
    (format!("{name}: {msg}: {path}"), name)
}

/// Returns `result`, or the failure triple; with a callback, defers `cb(err, result)` instead and
/// returns the request, as luv does.
fn finish(
    lua: &Lua,
    core: &Rc<Core>,
    a: &Args,
    cb_at: usize,
    path: &str,
    r: Result<LuaValue, Errno>,
) -> Ret {
    let cb = a.opt_func(cb_at)?;
    match (cb, r) {
        (None, Ok(v)) => Ok(LuaMultiValue::from_vec(vec![v])),
        (None, Err(e)) => {
            let (text, name) = error_text(e, path);
            Ok(LuaMultiValue::from_vec(vec![
                LuaValue::Nil,
                LuaValue::String(lua.create_string(text)?),
                LuaValue::String(lua.create_string(name)?),
            ]))
        }
        (Some(cb), r) => {
            let args = match r {
                Ok(v) => vec![LuaValue::Nil, v],
                Err(e) => vec![LuaValue::String(lua.create_string(error_text(e, path).0)?)],
            };
            core.st()?.defer(cb, args);
            FsReq::create(lua, Vec::new())?.into_lua_multi(lua)
        }
    }
}

/// A path argument: the bytes as given (names need not be UTF-8, and `fs_scandir_next` hands them out
/// as they are), and their text for error messages.
fn path_arg(a: &Args, i: usize) -> LuaResult<(PathBuf, String)> {
    let s = a.string(i)?;
    let shown = s.to_string_lossy();
    Ok((
        PathBuf::from(std::ffi::OsStr::from_bytes(&s.as_bytes())),
        shown,
    ))
}

fn time(lua: &Lua, sec: i64, nsec: i64) -> LuaResult<LuaTable> {
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("sec", sec)?;
    t.raw_set("nsec", nsec)?;
    Ok(t)
}

fn stat_table(lua: &Lua, m: &std::fs::Metadata) -> LuaResult<LuaValue> {
    let t = lua.create_table_with_capacity(0, 20)?;
    t.raw_set("type", type_name(m.file_type()))?;
    for (k, v) in [
        ("dev", m.dev() as i64),
        ("ino", m.ino() as i64),
        ("mode", m.mode() as i64),
        ("nlink", m.nlink() as i64),
        ("uid", m.uid() as i64),
        ("gid", m.gid() as i64),
        ("rdev", m.rdev() as i64),
        ("size", m.size() as i64),
        ("blksize", m.blksize() as i64),
        ("blocks", m.blocks() as i64),
        ("flags", 0),
        ("gen", 0),
    ] {
        t.raw_set(k, v)?;
    }
    t.raw_set("atime", time(lua, m.atime(), m.atime_nsec())?)?;
    t.raw_set("mtime", time(lua, m.mtime(), m.mtime_nsec())?)?;
    t.raw_set("ctime", time(lua, m.ctime(), m.ctime_nsec())?)?;
    t.raw_set("birthtime", time(lua, m.ctime(), m.ctime_nsec())?)?;
    Ok(LuaValue::Table(t))
}

/// `fs_stat` and `fs_lstat`: the stat table of what `metadata` finds at the path.
fn stat_with(
    lua: &Lua,
    core: &Rc<Core>,
    a: &Args,
    metadata: fn(&Path) -> std::io::Result<std::fs::Metadata>,
) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let r = metadata(&path)
        .map_err(|e| errno_of(&e))
        .and_then(|m| stat_table(lua, &m).map_err(|_| libc::ENOMEM));
    finish(lua, core, a, 2, &shown, r)
}

pub fn fs_stat(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    stat_with(lua, core, a, |p| std::fs::metadata(p))
}

pub fn fs_lstat(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    stat_with(lua, core, a, |p| std::fs::symlink_metadata(p))
}

pub fn fs_realpath(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let r = std::fs::canonicalize(&path)
        .map_err(|e| errno_of(&e))
        .and_then(|p| {
            lua.create_string(p.as_os_str().as_encoded_bytes())
                .map(LuaValue::String)
                .map_err(|_| libc::ENOMEM)
        });
    finish(lua, core, a, 2, &shown, r)
}

pub fn fs_chmod(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let mode = mode_arg(a, 2)?;
    let r = done(std::fs::set_permissions(
        &path,
        std::fs::Permissions::from_mode(mode),
    ));
    finish(lua, core, a, 3, &shown, r)
}

pub fn fs_unlink(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let r = done(std::fs::remove_file(&path));
    finish(lua, core, a, 2, &shown, r)
}

/// An OS call with nothing to return: `true`, as luv returns.
fn done(r: std::io::Result<()>) -> Result<LuaValue, Errno> {
    r.map(|()| LuaValue::Boolean(true))
        .map_err(|e| errno_of(&e))
}

/// `mode` argument `i` as the u32 the OS takes.
fn mode_arg(a: &Args, i: usize) -> LuaResult<u32> {
    let mode = a.int(i)?;
    u32::try_from(mode).map_err(|_| a.invalid(i, "mode out of range"))
}

pub fn fs_mkdir(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let mode = mode_arg(a, 2)?;
    let r = done(std::fs::DirBuilder::new().mode(mode).create(&path));
    finish(lua, core, a, 3, &shown, r)
}

pub fn fs_rmdir(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let r = done(std::fs::remove_dir(&path));
    finish(lua, core, a, 2, &shown, r)
}

pub fn fs_rename(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let (new_path, new_shown) = path_arg(a, 2)?;
    let r = done(std::fs::rename(&path, &new_path));
    // luv names both paths in the message: "ENOENT: no such file or directory: a -> b".
    finish(lua, core, a, 3, &format!("{shown} -> {new_shown}"), r)
}

/// luv's `uv_fs_t`: what every fs call given a callback returns, and what `fs_scandir` returns in
/// any case. A scandir request holds the directory's entries, read in one go (as libuv does) and
/// handed out one at a time by `fs_scandir_next`; the others hold none.
pub struct FsReq {
    /// Names and types, sorted by the bytes of the name (libuv sorts with strcmp).
    entries: Vec<(Vec<u8>, &'static str)>,
    /// The next entry to hand out (the entries are dropped once the last one is).
    next: usize,
}

impl FsReq {
    fn create(lua: &Lua, entries: Vec<(Vec<u8>, &'static str)>) -> LuaResult<LuaAnyUserData> {
        lua.create_userdata(FsReq { entries, next: 0 })
    }
}

impl LuaUserData for FsReq {
    fn add_fields<F: LuaUserDataFields<Self>>(fields: &mut F) {
        // Lua's own argument errors name the type by it ("got uv_fs").
        fields.add_meta_field("__name", "uv_fs");
    }

    fn add_methods<M: LuaUserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(LuaMetaMethod::ToString, |_, this, ()| {
            Ok(format!("uv_fs_t: {:p}", this as *const FsReq))
        });
    }
}

/// luv's name for an entry's type. The type comes from the directory entry itself (no stat), so a
/// symbolic link is `"link"` whatever it points to.
fn dirent_type(e: &std::fs::DirEntry) -> &'static str {
    e.file_type().map_or("unknown", type_name)
}

/// luv's name for a file type, in `fs_stat`'s `type` field and from `fs_scandir_next`.
fn type_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "link"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "unknown"
    }
}

fn read_entries(path: &Path) -> Result<Vec<(Vec<u8>, &'static str)>, Errno> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(path).map_err(|e| errno_of(&e))? {
        let e = e.map_err(|e| errno_of(&e))?;
        entries.push((e.file_name().as_bytes().to_vec(), dirent_type(&e)));
    }
    entries.sort_unstable_by(|x, y| x.0.cmp(&y.0));
    Ok(entries)
}

/// `fs_scandir(path [, callback])`: the request, or the failure triple. With a callback it returns
/// the request at once (as luv does, even when the listing will fail) and calls `callback(nil, req)`
/// or `callback(err)` on a later tick.
pub fn fs_scandir(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let (path, shown) = path_arg(a, 1)?;
    let cb = a.opt_func(2)?;
    let listing = read_entries(&path);
    let req = |entries| FsReq::create(lua, entries);
    let Some(cb) = cb else {
        return match listing {
            Ok(entries) => req(entries)?.into_lua_multi(lua),
            Err(e) => {
                let (text, name) = error_text(e, &shown);
                (LuaValue::Nil, text, name).into_lua_multi(lua)
            }
        };
    };
    let (ud, args) = match listing {
        Ok(entries) => {
            let ud = req(entries)?;
            (ud.clone(), vec![LuaValue::Nil, LuaValue::UserData(ud)])
        }
        Err(e) => {
            let text = lua.create_string(error_text(e, &shown).0)?;
            (req(Vec::new())?, vec![LuaValue::String(text)])
        }
    };
    core.st()?.defer(cb, args);
    ud.into_lua_multi(lua)
}

/// `fs_scandir_next(req)`: `name, type` for the next entry; nothing at all once the listing is
/// exhausted (luv returns no values, not nil).
pub fn fs_scandir_next(lua: &Lua, _core: &Rc<Core>, a: &Args) -> Ret {
    let LuaValue::UserData(ud) = a.get(1) else {
        return Err(a.bad(1, "uv_req"));
    };
    let mut req = ud.borrow_mut::<FsReq>().map_err(|_| a.bad(1, "uv_req"))?;
    let Some((name, kind)) = req.entries.get(req.next) else {
        return Ok(LuaMultiValue::new());
    };
    let out = (lua.create_string(name)?, *kind).into_lua_multi(lua);
    req.next += 1;
    if req.next == req.entries.len() {
        // The listing is done with; luv frees the request here too.
        req.entries = Vec::new();
        req.next = 0;
    }
    out
}
