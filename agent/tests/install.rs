//! `mpijob-agent install DIR` puts a working copy of itself in DIR, as the
//! init container does, and says clearly when it cannot.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_mpijob-agent");

#[test]
fn install_copies_a_runnable_agent() {
    let dir = std::env::temp_dir().join(format!("mpijob-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(AGENT)
        .arg("install")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dest = dir.join("mpijob-agent");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("installed {}", dest.display())
    );
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(AGENT).unwrap());
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let v = Command::new(&dest).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("mpijob-agent "));
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn install_into_a_missing_directory_names_the_fix() {
    let out = Command::new(AGENT)
        .args(["install", "/nonexistent/mpijob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot install the agent into /nonexistent/mpijob: no such file or directory; mount a writable emptyDir there"),
        "{err}"
    );
}
