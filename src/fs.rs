//! The file-system calls a server needs (stat, realpath, chmod, unlink), in luv's shapes: without a
//! callback they return at once; with one, the callback gets `(err, result)` on a later tick.

use crate::args::Args;
use crate::error::{describe, errno_of, Errno};
use crate::event_loop::Core;
use mlua::prelude::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::rc::Rc;

type Ret = LuaResult<LuaMultiValue>;

/// luv's fs error: `"ENOENT: no such file or directory: /the/path"`.
fn error_text(code: Errno, path: &str) -> (String, &'static str) {
    let (name, msg) = describe(code);
    (format!("{name}: {msg}: {path}"), name)
}

/// Returns `result`, or the failure triple; with a callback, defers `cb(err, result)` instead.
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
            Ok(LuaMultiValue::from_vec(vec![LuaValue::Boolean(true)]))
        }
    }
}

fn time(lua: &Lua, sec: i64, nsec: i64) -> LuaResult<LuaTable> {
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("sec", sec)?;
    t.raw_set("nsec", nsec)?;
    Ok(t)
}

fn stat_table(lua: &Lua, m: &std::fs::Metadata) -> LuaResult<LuaValue> {
    let t = lua.create_table_with_capacity(0, 20)?;
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
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
    };
    t.raw_set("type", kind)?;
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

pub fn fs_stat(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let path = a.str(1)?;
    let r = std::fs::metadata(&path)
        .map_err(|e| errno_of(&e))
        .and_then(|m| stat_table(lua, &m).map_err(|_| libc::ENOMEM));
    finish(lua, core, a, 2, &path, r)
}

pub fn fs_lstat(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let path = a.str(1)?;
    let r = std::fs::symlink_metadata(&path)
        .map_err(|e| errno_of(&e))
        .and_then(|m| stat_table(lua, &m).map_err(|_| libc::ENOMEM));
    finish(lua, core, a, 2, &path, r)
}

pub fn fs_realpath(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let path = a.str(1)?;
    let r = std::fs::canonicalize(&path)
        .map_err(|e| errno_of(&e))
        .and_then(|p| {
            lua.create_string(p.as_os_str().as_encoded_bytes())
                .map(LuaValue::String)
                .map_err(|_| libc::ENOMEM)
        });
    finish(lua, core, a, 2, &path, r)
}

pub fn fs_chmod(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let path = a.str(1)?;
    let mode = a.int(2)?;
    let mode = u32::try_from(mode).map_err(|_| a.invalid(2, "mode out of range"))?;
    let r = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map(|()| LuaValue::Boolean(true))
        .map_err(|e| errno_of(&e));
    finish(lua, core, a, 3, &path, r)
}

pub fn fs_unlink(lua: &Lua, core: &Rc<Core>, a: &Args) -> Ret {
    let path = a.str(1)?;
    let r = std::fs::remove_file(&path)
        .map(|()| LuaValue::Boolean(true))
        .map_err(|e| errno_of(&e));
    finish(lua, core, a, 2, &path, r)
}
