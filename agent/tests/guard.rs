//! `mpijob-agent guard -- sshd …`, as a Kubeflow worker runs the image's
//! own sshd: the guard hands sshd this container's environment for its
//! sessions through a private copy of sshd's config, never through the
//! command line, and leaves an sshd without SetEnv as it is.
//!
//! Each guard runs as root in a private mount namespace whose /run is a
//! tmpfs (with sshd's /run/sshd), so that its state directory,
//! /run/mpijob, is the test's own.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::hosts::Proc;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A value that must reach the session and never a log or a command line.
const SECRET: &str = "token-from-a-Secret-7f3a";

/// An image's own sshd config, Kubeflow style: its port, the job key as
/// host key, StrictModes off.
fn image_config(tmp: &TempDir, secret: &Path, port: u16) -> PathBuf {
    let key = tmp.path("host_key");
    fs::copy(secret.join("id_ed25519"), &key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let config = tmp.path("sshd_config");
    fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}/id_ed25519.pub\n\
             PidFile {}\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n",
            key.display(),
            secret.display(),
            tmp.path("sshd.pid").display()
        ),
    )
    .unwrap();
    config
}

/// `mpijob-agent guard -- SSHD -De -f CONFIG` with `env` on top of this
/// process's, in a private mount namespace with its own /run.
fn guard(sshd: &Path, config: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec \"$@\"")
        .arg("sh")
        .arg(AGENT)
        .args(["guard", "--no-oom-watch", "--"])
        .arg(sshd)
        .args(["-De", "-f"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Proc::spawn(cmd)
}

/// Run `script` over ssh on `port` as root, with the job key.
fn ssh(key: &Path, port: u16, script: &str) -> std::process::Output {
    let mut argv = ssh_with_key(key, port, "127.0.0.1");
    argv.push(script.into());
    let mut out = None;
    // sshd listens a moment after the guard starts it.
    for _ in 0..100 {
        let o = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        if o.status.code() != Some(255) {
            return o;
        }
        out = Some(o);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("ssh never got in: {out:?}");
}

fn stop(mut g: Proc) -> String {
    kill(Pid::from_raw(g.child.id() as i32), Signal::SIGTERM).unwrap();
    g.wait_exit(Duration::from_secs(10));
    g.stderr()
}

#[test]
fn the_images_sshd_gets_the_containers_environment_from_a_private_config() {
    require_tools();
    let tmp = TempDir::new("guard-env");
    let secret = secret_dir(&tmp, "secret", None);
    let port = free_port();
    let config = image_config(&tmp, &secret, port);
    let before = fs::read_to_string(&config).unwrap();
    let path = "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin";
    let g = guard(
        Path::new(SSHD),
        &config,
        &[
            ("PATH", path),
            ("LD_LIBRARY_PATH", "/opt/venv/lib"),
            ("API_TOKEN", SECRET),
        ],
    );
    let key = tmp.path("host_key");
    let out = ssh(
        &key,
        port,
        "printf '%s|' \"$PATH\" \"$LD_LIBRARY_PATH\" \"$API_TOKEN\"",
    );
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    let got: Vec<&str> = got.split('|').collect();
    // A login shell's rc file may put more in front of PATH; ours is whole.
    assert!(got[0].ends_with(path), "{got:?}\n{}", g.stderr());
    assert_eq!(got[1..3], ["/opt/venv/lib", SECRET], "{}", g.stderr());
    // The values are in no process's command line, sshd's included.
    let shown = processes_mentioning(SECRET);
    assert!(shown.is_empty(), "on a command line: {shown:?}");
    let log = stop(g);
    assert!(
        log.contains("commands run over ssh get this container's environment (")
            && log.contains("(a private copy of"),
        "{log}"
    );
    assert!(!log.contains(SECRET), "{log}");
    // The image's own config is untouched.
    assert_eq!(fs::read_to_string(&config).unwrap(), before);
}

/// An sshd older than 8.7 (played by a wrapper that answers `-V` as
/// OpenSSH 8.2 does, and runs the real one otherwise) keeps its command
/// line and its default environment, and the log says so.
#[test]
fn an_image_sshd_without_set_env_runs_as_it_is() {
    require_tools();
    let tmp = TempDir::new("guard-old");
    let secret = secret_dir(&tmp, "secret", None);
    let port = free_port();
    let config = image_config(&tmp, &secret, port);
    let dir = tmp.path("old");
    fs::create_dir(&dir).unwrap();
    let old = dir.join("sshd");
    fs::write(
        &old,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -V ]; then\n  echo 'unknown option -- V' >&2\n  \
             echo 'OpenSSH_8.2p1 Ubuntu-4ubuntu0.5, OpenSSL 1.1.1f  31 Mar 2020' >&2\n  \
             echo 'usage: sshd [-46DdeiqTt] [-C connection_spec]' >&2\n  exit 1\nfi\n\
             echo \"argv: $*\" >&2\nexec {SSHD} \"$@\"\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).unwrap();
    let g = guard(&old, &config, &[("API_TOKEN", SECRET)]);
    let out = ssh(
        &tmp.path("host_key"),
        port,
        "printf '%s' \"${API_TOKEN-unset}\"",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "unset", "{out:?}");
    let log = stop(g);
    assert!(
        log.contains("is OpenSSH 8.2, which has no SetEnv: commands run over ssh get sshd's default environment"),
        "{log}"
    );
    assert!(
        log.contains(&format!("argv: -De -f {}", config.display())),
        "{log}"
    );
}
