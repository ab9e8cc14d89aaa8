//! `mpijob-agent install DIR`: the init container's job. The agent copies
//! its own (static) binary into the shared emptyDir, so that any MPI image
//! can run it without having it baked in.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mpijob_api::contract;

use crate::errors::io_reason;

/// Copy the running binary to `DIR/mpijob-agent`, mode 0755, atomically (a
/// reader never sees half a file). Returns the destination.
pub fn run(dir: &Path) -> Result<PathBuf> {
    let source = fs::read_link("/proc/self/exe").context("finding the agent's own binary")?;
    let dest = dir.join(contract::AGENT_BINARY);
    let tmp = dir.join(format!(
        ".{}.{}",
        contract::AGENT_BINARY,
        std::process::id()
    ));
    let copy = || -> io::Result<()> {
        fs::copy(&source, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &dest)
    };
    if let Err(e) = copy() {
        let _ = fs::remove_file(&tmp);
        anyhow::bail!(
            "cannot install the agent into {}: {}; mount a writable emptyDir there",
            dir.display(),
            io_reason(&e)
        );
    }
    Ok(dest)
}
