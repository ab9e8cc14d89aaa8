//! Starting a process inside a local host, between fork and exec: join the
//! host's network namespace, take private mount and UTS namespaces, set the
//! hostname, and bind the host's own files (resolv.conf, hosts) over
//! `/etc`'s. The binds live only in that private mount namespace, so
//! nothing can stay mounted on this machine. (A private mount namespace
//! still shares the files themselves: the worker agents run without
//! `--peers`, so that they write no ssh client config anywhere.)
//!
//! Without root, a user namespace that maps only the caller's own uid and
//! gid allows the private mount and UTS namespaces and the binds; the
//! process keeps its uid and gains no privilege outside.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// How to enter a host.
#[derive(Debug, Default)]
pub struct Enter {
    /// The host's network namespace (`/run/netns/<name>`, opened).
    pub netns: Option<OwnedFd>,
    /// A private UTS namespace with this hostname.
    pub hostname: Option<String>,
    /// Files bound over others in a private mount namespace: (source,
    /// target).
    pub binds: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// Not root: take a user namespace mapping (uid, gid) to itself first.
    pub user_ns: Option<(u32, u32)>,
}

/// Open a named network namespace for [`Enter::netns`].
pub fn open_netns(name: &str) -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open(Path::new(super::net::NETNS_DIR).join(name))?.into())
}

fn cstr(s: impl AsRef<[u8]>) -> CString {
    CString::new(s.as_ref().to_vec()).expect("no NUL in paths and names")
}

fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Write `text` to `path`, with plain system calls (for pre_exec).
fn write_proc(path: &CString, text: &CString) -> std::io::Result<()> {
    // SAFETY: open/write/close on valid C strings; async-signal-safe.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let bytes = text.as_bytes();
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::close(fd);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Enter {
    /// Make `cmd` enter the host before it execs. Everything that allocates
    /// happens here, before the fork; the hook itself only makes system
    /// calls.
    pub fn apply(self, cmd: &mut Command) {
        let netns = self.netns;
        let hostname = self.hostname.map(cstr);
        let binds: Vec<(CString, CString)> = self
            .binds
            .iter()
            .map(|(s, t)| {
                (
                    cstr(s.as_os_str().as_bytes()),
                    cstr(t.as_os_str().as_bytes()),
                )
            })
            .collect();
        let maps = self.user_ns.map(|(uid, gid)| {
            (
                (cstr("/proc/self/uid_map"), cstr(format!("{uid} {uid} 1"))),
                (cstr("/proc/self/setgroups"), cstr("deny")),
                (cstr("/proc/self/gid_map"), cstr(format!("{gid} {gid} 1"))),
            )
        });
        let root = cstr("/");
        let none = cstr("none");
        // SAFETY: the hook makes only async-signal-safe system calls on
        // data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = &netns {
                    check(libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET))?;
                }
                let mut flags = 0;
                if let Some(((uid_path, uid_map), (sg_path, deny), (gid_path, gid_map))) = &maps {
                    check(libc::unshare(libc::CLONE_NEWUSER))?;
                    write_proc(uid_path, uid_map)?;
                    write_proc(sg_path, deny)?;
                    write_proc(gid_path, gid_map)?;
                }
                if !binds.is_empty() {
                    flags |= libc::CLONE_NEWNS;
                }
                if hostname.is_some() {
                    flags |= libc::CLONE_NEWUTS;
                }
                if flags != 0 {
                    check(libc::unshare(flags))?;
                }
                if !binds.is_empty() {
                    check(libc::mount(
                        none.as_ptr(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ))?;
                    for (source, target) in &binds {
                        check(libc::mount(
                            source.as_ptr(),
                            target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        ))?;
                    }
                }
                if let Some(name) = &hostname {
                    check(libc::sethostname(
                        name.as_ptr(),
                        name.as_bytes().len() as libc::size_t,
                    ))?;
                }
                Ok(())
            });
        }
    }
}
