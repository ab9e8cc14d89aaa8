//! Who the agent runs as, and the private state directory it owns.
//!
//! The user comes from `/etc/passwd`, read directly: the binary is linked
//! statically, and glibc's NSS (`getpwuid`) does not work in static binaries.
//! OpenSSH itself takes the home directory from the passwd entry, not from
//! `$HOME`, so this is also the home that `ssh` will use.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use nix::unistd::{getgid, getuid};

use crate::errors::io_reason;

/// The running user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// `None` when the uid has no passwd entry (e.g. an arbitrary uid).
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

impl User {
    pub fn current() -> User {
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
        let (name, home) = match lookup(&passwd, uid) {
            Some((name, home)) => (Some(name), home),
            None => (None, None),
        };
        User {
            uid,
            gid,
            name,
            home,
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// The name for messages: the user name, else the uid.
    pub fn display(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// The name and home directory of `uid` in passwd(5) text.
pub fn lookup(passwd: &str, uid: u32) -> Option<(String, Option<PathBuf>)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[2].parse::<u32>().ok()? != uid {
            return None;
        }
        let home = (!fields[5].is_empty()).then(|| PathBuf::from(fields[5]));
        Some((fields[0].to_string(), home))
    })
}

/// The state directory when `--state-dir` is not given: `/run/mpijob` for
/// root, else `$XDG_RUNTIME_DIR/mpijob`, else `/tmp/mpijob-<uid>`.
pub fn default_state_dir(user: &User, xdg_runtime_dir: Option<&Path>) -> PathBuf {
    if user.is_root() {
        PathBuf::from("/run/mpijob")
    } else if let Some(dir) = xdg_runtime_dir.filter(|d| d.is_absolute()) {
        dir.join("mpijob")
    } else {
        PathBuf::from(format!("/tmp/mpijob-{}", user.uid))
    }
}

/// Create the state directory, or check that an existing one is ours and is
/// a real directory (not a symlink someone planted in `/tmp`), then make it
/// private.
pub fn prepare_state_dir(dir: &Path, user: &User) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            if !meta.file_type().is_dir() {
                bail!(
                    "--state-dir {}: exists and is not a directory; remove it or choose another --state-dir",
                    dir.display()
                );
            }
            if meta.uid() != user.uid {
                bail!(
                    "--state-dir {}: owned by uid {}, not by {}; remove it or choose another --state-dir",
                    dir.display(),
                    meta.uid(),
                    user.display()
                );
            }
        }
        Err(_) => {
            if let Err(e) = fs::create_dir_all(dir) {
                bail!(
                    "--state-dir {}: cannot create it: {}; choose a writable --state-dir",
                    dir.display(),
                    io_reason(&e)
                );
            }
        }
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
        anyhow::anyhow!(
            "--state-dir {}: cannot make it private: {}; choose a writable --state-dir",
            dir.display(),
            io_reason(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        broken line\n\
        mpiuser:x:1000:1000:MPI user,,,:/home/mpiuser:/bin/sh\n\
        nohome:x:1001:1001:::/bin/sh\n";

    #[test]
    fn finds_name_and_home_by_uid() {
        assert_eq!(
            lookup(PASSWD, 0),
            Some(("root".into(), Some(PathBuf::from("/root"))))
        );
        assert_eq!(
            lookup(PASSWD, 1000),
            Some(("mpiuser".into(), Some(PathBuf::from("/home/mpiuser"))))
        );
        assert_eq!(lookup(PASSWD, 1001), Some(("nohome".into(), None)));
        assert_eq!(lookup(PASSWD, 4242), None);
    }

    #[test]
    fn default_state_dir_is_private_per_user() {
        let root = User {
            uid: 0,
            gid: 0,
            name: Some("root".into()),
            home: None,
        };
        let user = User {
            uid: 1000,
            gid: 1000,
            name: None,
            home: None,
        };
        assert_eq!(default_state_dir(&root, None), Path::new("/run/mpijob"));
        assert_eq!(
            default_state_dir(&user, Some(Path::new("/run/user/1000"))),
            Path::new("/run/user/1000/mpijob")
        );
        assert_eq!(
            default_state_dir(&user, Some(Path::new("relative"))),
            Path::new("/tmp/mpijob-1000")
        );
        assert_eq!(
            default_state_dir(&user, None),
            Path::new("/tmp/mpijob-1000")
        );
        assert_eq!(user.display(), "uid 1000");
    }
}
