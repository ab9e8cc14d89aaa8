//! File writers for the agent's private files: the state directory's keys
//! and configs, the launcher's hostfile and ssh wrapper, the ssh client
//! config the worker edits, and local mode's run directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Result;

use crate::errors::io_reason;

/// Write a private (0600) file atomically: a temporary file in the same
/// directory, then a rename, so that a reader never sees half a file and an
/// existing file with looser permissions is replaced, not reused.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomic(path, contents, 0o600)
}

/// [`write_private`] with another mode, e.g. 0700 for the owner's scripts.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_file(path, contents, mode).map_err(|e| {
        anyhow::anyhow!(
            "cannot write {}: {}; choose a writable --state-dir",
            path.display(),
            io_reason(&e)
        )
    })
}

/// Replace `file` by a rename from a temporary file beside it, so that a
/// reader (sshd, a concurrent ssh) never sees half of it. The temporary
/// name is hidden and carries our pid, and is removed again on failure.
pub fn write_file(file: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = file.with_file_name(format!(
        ".{}.mpijob-{}",
        file.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create `dir`, private (0700); it must not exist yet.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Write a new file with `mode` (whatever the umask); it must not exist
/// yet, so that nothing planted beforehand is written through.
#[cfg_attr(not(feature = "local"), allow(dead_code))] // local mode's
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
