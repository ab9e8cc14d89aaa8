//! The ssh client side: plain `ssh <peer>` must reach a peer's sshd with
//! the right port, the job identity and host checking on.
//!
//! The agent writes a complete client config for the job's peers into its
//! state directory, then makes plain `ssh` read it, in the first way that
//! works (see agent/README.md):
//! 1. an `Include` line at the top of `~/.ssh/config` (home from passwd, as
//!    ssh uses it), when that file can be written;
//! 2. as root, a drop-in `/etc/ssh/ssh_config.d/50-mpijob.conf` (read by
//!    Debian's, Ubuntu's and Fedora's stock `ssh_config`), or else an
//!    `Include` line at the top of `/etc/ssh/ssh_config`;
//! 3. otherwise a `config` already in `~/.ssh` (the job Secret's own) is
//!    left to do the work, and the agent says so.
//!
//! Whatever it added is removed again when the agent exits.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use mpijob_api::sshclient::{check_peer, known_hosts, pinned_addresses, ssh_config};

/// Where the client files live in a state directory.
pub struct ClientFiles<'a> {
    /// The private copy of the job key.
    pub identity: &'a Path,
    pub known_hosts: &'a Path,
    pub config: &'a Path,
}

/// Write the pinned `known_hosts` and the `ssh_config` for `peers` (the
/// identity must already be there). Both roles use this: the worker for
/// plain ssh between peers, the launcher for mpirun's ssh.
pub fn write_files(
    files: &ClientFiles,
    peers: &[String],
    port: u16,
    key: &mpijob_api::sshkey::JobKey,
) -> anyhow::Result<()> {
    let pins = known_hosts(peers, port, &key.public_key_only());
    crate::files::write_private(files.known_hosts, pins.as_bytes())?;
    let conf = ssh_config(peers, port, files.identity, files.known_hosts);
    crate::files::write_private(files.config, conf.as_bytes())
}

const MARK: &str = "# Added by mpijob-agent, removed when it exits:";

/// The lines put at the top of a config file to include `target`.
fn include_block(target: &Path) -> String {
    format!("{MARK}\nInclude {}\n", target.display())
}

/// `text` with an include of `target` at the top; `None` when it is already
/// there.
pub fn add_include(text: &str, target: &Path) -> Option<String> {
    let block = include_block(target);
    if text.starts_with(&block) || text.contains(&format!("\n{block}")) {
        return None;
    }
    Some(format!("{block}{text}"))
}

/// `text` without the include of `target`.
pub fn remove_include(text: &str, target: &Path) -> String {
    text.replacen(&include_block(target), "", 1)
}

/// How plain `ssh` was pointed at the job's client config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// An include line in this file (a user's or the system config).
    Include(PathBuf),
    /// This drop-in file.
    DropIn(PathBuf),
    /// Nothing was written; this existing file is relied on.
    Existing(PathBuf),
    /// Nothing works: the reason, for the log.
    Nothing(String),
}

/// Point plain `ssh` at `config` (see the module docs for the order).
pub fn install(home: Option<&Path>, root: bool, config: &Path) -> Installed {
    let user_config = home.map(|h| h.join(".ssh").join("config"));
    if let Some(file) = &user_config {
        if include_in(file, config, 0o600).is_ok() {
            return Installed::Include(file.clone());
        }
    }
    if root {
        let system = Path::new("/etc/ssh/ssh_config");
        let dropin_dir = Path::new("/etc/ssh/ssh_config.d");
        let stock_includes_dropins = fs::read_to_string(system)
            .map(|t| {
                t.lines()
                    .any(|l| l.trim() == "Include /etc/ssh/ssh_config.d/*.conf")
            })
            .unwrap_or(false);
        if stock_includes_dropins && dropin_dir.is_dir() {
            let file = dropin_dir.join("50-mpijob.conf");
            let text = format!("{MARK}\nInclude {}\n", config.display());
            if crate::files::write_file(&file, text.as_bytes(), 0o644).is_ok() {
                return Installed::DropIn(file);
            }
        }
        if include_in(system, config, 0o644).is_ok() {
            return Installed::Include(system.to_path_buf());
        }
    }
    match user_config {
        Some(file) if file.exists() => Installed::Existing(file),
        Some(file) => Installed::Nothing(format!(
            "{} is not writable and does not exist",
            file.display()
        )),
        None => Installed::Nothing("the user has no home directory in /etc/passwd".into()),
    }
}

/// Undo [`install`]; best effort, at exit.
pub fn uninstall(installed: &Installed, config: &Path) {
    match installed {
        Installed::Include(file) => {
            if let Ok(text) = fs::read_to_string(file) {
                let mode = fs::metadata(file)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0o600);
                let _ =
                    crate::files::write_file(file, remove_include(&text, config).as_bytes(), mode);
            }
        }
        Installed::DropIn(file) => {
            let _ = fs::remove_file(file);
        }
        Installed::Existing(_) | Installed::Nothing(_) => {}
    }
}

fn include_in(file: &Path, target: &Path, new_mode: u32) -> std::io::Result<()> {
    let (text, mode) = match fs::read_to_string(file) {
        Ok(text) => {
            let mode = fs::metadata(file)?.permissions().mode() & 0o777;
            (text, mode)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(dir) = file.parent() {
                if !dir.exists() {
                    fs::create_dir(dir)?;
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
                }
            }
            (String::new(), new_mode)
        }
        Err(e) => return Err(e),
    };
    match add_include(&text, target) {
        Some(text) => crate::files::write_file(file, text.as_bytes(), mode),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_is_added_once_at_the_top_and_removed_cleanly() {
        let target = Path::new("/run/mpijob/ssh_config");
        let user = "Host *\n    ForwardAgent no\n";
        let with = add_include(user, target).unwrap();
        assert_eq!(
            with,
            "# Added by mpijob-agent, removed when it exits:\n\
             Include /run/mpijob/ssh_config\nHost *\n    ForwardAgent no\n"
        );
        assert_eq!(add_include(&with, target), None);
        assert_eq!(remove_include(&with, target), user);
        // Another job's include stays.
        let other = add_include(&with, Path::new("/tmp/other/ssh_config")).unwrap();
        assert_eq!(add_include(&other, target), None);
        assert_eq!(
            remove_include(&other, target),
            add_include(user, Path::new("/tmp/other/ssh_config")).unwrap()
        );
        assert_eq!(add_include("", target).unwrap(), include_block(target));
    }
}
