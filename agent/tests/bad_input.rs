//! Bad input: each case gets one exact error line, a non-zero exit within
//! 2 s, and no sshd left running.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

/// Run the worker, expect it to fail fast with exactly `message`.
fn fails_with(tmp: &TempDir, launch: &Launch, ssh_dir: &Path, extra: &[&str], message: &str) {
    let state = tmp.path("state");
    let port = free_port().to_string();
    let mut args = vec!["--listen", "127.0.0.1"];
    if !extra.contains(&"--port") {
        args.extend(["--port", &port]);
    }
    args.extend(extra);
    let mut agent = Agent::start(launch, &state, ssh_dir, &args);
    let status = agent.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(1), "{}", agent.log());
    let log = agent.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{log}");
    let got = errors[0].split_once(" ERROR ").unwrap().1;
    assert_eq!(
        got,
        message.replace("{state}", &state.display().to_string())
    );
    let left = processes_mentioning(&state.display().to_string());
    assert!(left.is_empty(), "still running: {left:?}");
}

#[test]
fn sshd_path_missing() {
    require_tools();
    let tmp = TempDir::new("no-sshd");
    let secret = secret_dir(&tmp, "secret", None);
    fails_with(
        &tmp,
        &Launch::default(),
        &secret,
        &["--sshd-path", "/nonexistent/sshd"],
        "--sshd-path /nonexistent/sshd: no such file or directory; install openssh-server or point --sshd-path at sshd",
    );
}

#[test]
fn sshd_path_not_executable() {
    require_tools();
    let tmp = TempDir::new("noexec-sshd");
    let secret = secret_dir(&tmp, "secret", None);
    let fake = tmp.path("sshd");
    fs::write(&fake, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o644)).unwrap();
    let fake = fake.display().to_string();
    fails_with(
        &tmp,
        &Launch::default(),
        &secret,
        &["--sshd-path", &fake],
        &format!("--sshd-path {fake}: not an executable file; install openssh-server or point --sshd-path at sshd"),
    );
}

#[test]
fn no_key_in_ssh_dir() {
    require_tools();
    let tmp = TempDir::new("no-key");
    let empty = tmp.path("empty");
    fs::create_dir(&empty).unwrap();
    fails_with(
        &tmp,
        &Launch::default(),
        &empty,
        &[],
        &format!(
            "--ssh-dir {}: no private key found (looked for id_ed25519, id_ecdsa, id_rsa, ssh-privatekey); mount the job's key Secret there or pass --ssh-dir",
            empty.display()
        ),
    );
}

#[test]
fn unreadable_key() {
    require_tools();
    test_user();
    let tmp = TempDir::new("unreadable");
    // Root-owned 0600: uid 1000 cannot read it.
    let secret = tmp.path("secret");
    fs::create_dir(&secret).unwrap();
    keygen(&secret, "id_ed25519");
    let launch = Launch {
        unprivileged: true,
        ..Default::default()
    };
    fails_with(
        &tmp,
        &launch,
        &secret,
        &[],
        &format!(
            "--ssh-dir {}: cannot read id_ed25519: permission denied; make it readable by uid 1000 (for a Secret: defaultMode 0440 and the pod's fsGroup)",
            secret.display()
        ),
    );
}

#[test]
fn key_that_is_not_a_key() {
    require_tools();
    let tmp = TempDir::new("garbage-key");
    let secret = tmp.path("secret");
    fs::create_dir(&secret).unwrap();
    fs::write(secret.join("id_ed25519"), "not a key\n").unwrap();
    fails_with(
        &tmp,
        &Launch::default(),
        &secret,
        &[],
        &format!(
            "--ssh-dir {}: id_ed25519 is not an SSH private key (no OpenSSH or PEM header); put the job's private key there (OpenSSH or PEM format)",
            secret.display()
        ),
    );
}

#[test]
fn port_already_in_use() {
    require_tools();
    let tmp = TempDir::new("port-in-use");
    let secret = secret_dir(&tmp, "secret", None);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    fails_with(
        &tmp,
        &Launch::default(),
        &secret,
        &["--port", &port],
        &format!("--port {port}: 127.0.0.1:{port} is already in use; stop what listens there or choose another --port"),
    );
}

#[test]
fn config_rejected_by_sshd_t() {
    require_tools();
    let tmp = TempDir::new("sshd-t");
    let secret = secret_dir(&tmp, "secret", None);
    let state = tmp.path("state");
    // The generated config ends with the extra option: find its line.
    let line = {
        let probe = TempDir::new("sshd-t-lines");
        let secret = secret_dir(&probe, "secret", None);
        let port = free_port().to_string();
        let mut agent = Agent::start(
            &Launch::default(),
            &probe.path("state"),
            &secret,
            &["--port", &port, "--listen", "127.0.0.1"],
        );
        agent.wait_ready();
        let config = fs::read_to_string(probe.path("state/sshd_config")).unwrap();
        config.lines().count() + 1
    };
    fails_with(
        &tmp,
        &Launch::default(),
        &secret,
        &["--sshd-option", "NoSuchOption yes"],
        &format!(
            "sshd -t rejected the generated config: {}/sshd_config: line {line}: Bad configuration option: NoSuchOption; fix or remove the --sshd-option values",
            state.display()
        ),
    );
}
