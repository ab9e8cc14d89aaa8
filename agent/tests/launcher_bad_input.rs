//! The launcher's bad input: exit 2 at once, with one error line that names
//! the flag, the value and the fix, and the same line as the termination
//! message.

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::*;

/// Run the launcher with `args`; expect exit 2 and an error line that
/// starts with `message`.
fn fails_with(args: &[&str], message: &str) {
    let tmp = TempDir::new("launcher-bad");
    let secret = secret_dir(&tmp, "secret", None);
    let log = tmp.path("termination-log");
    let out = Command::new(AGENT)
        .arg("launcher")
        .arg("--ssh-dir")
        .arg(&secret)
        .arg("--state-dir")
        .arg(tmp.path("state"))
        .arg("--termination-log")
        .arg(&log)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("MPIJOB_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "want one error line:\n{err}");
    let got = errors[0].split_once(" ERROR ").unwrap().1;
    assert!(got.starts_with(message), "got:  {got}\nwant: {message}");
    let summary = fs::read_to_string(&log).unwrap();
    assert_eq!(summary, format!("launcher: {got}\n"));
}

#[test]
fn mca_key_with_a_newline() {
    fails_with(
        &["--hosts", "h1", "--mca=bt\nl=tcp", "--", "./hello"],
        "--mca \"bt\\nl=tcp\": key \"bt\\nl\" must not contain a line break",
    );
}

#[test]
fn mca_value_with_a_newline() {
    fails_with(
        &["--hosts", "h1", "--mca=btl=tcp\nself", "--", "./hello"],
        "--mca \"btl=tcp\\nself\": value must not contain a line break",
    );
}

#[test]
fn mca_key_starting_with_a_dash() {
    fails_with(
        &["--hosts", "h1", "--mca=-btl=tcp", "--", "./hello"],
        "--mca \"-btl=tcp\": key \"-btl\" must not start with '-'",
    );
}

#[test]
fn empty_command() {
    fails_with(
        &["--hosts", "h1", "--"],
        "no command: give the MPI program after --",
    );
    fails_with(
        &["--hosts", "h1", "--", ""],
        "no command: give the MPI program after --",
    );
}

#[test]
fn mpi_home_without_mpirun() {
    let tmp = TempDir::new("no-mpirun");
    let home = tmp.0.display().to_string();
    fails_with(
        &["--hosts", "h1", "--mpi-home", &home, "--", "./hello"],
        &format!(
            "--mpi-home {home}: {home}/bin/mpirun does not exist or is not executable; point --mpi-home at the MPI installation"
        ),
    );
}

#[test]
fn no_workers_and_half_a_job() {
    fails_with(&["--", "./hello"], "no workers given: pass --hosts");
    fails_with(
        &["--job", "pi", "--workers", "2", "--", "./hello"],
        "--job, --namespace and --workers go together",
    );
}

#[test]
fn extra_args_that_look_like_flags_stay_values() {
    // `--extra-mpi-args=-N` is a value, so this gets as far as the MCA check.
    fails_with(
        &[
            "--hosts",
            "h1",
            "--extra-mpi-args=-N",
            "--extra-mpi-args",
            "-x",
            "--mca=-x=1",
            "--",
            "./hello",
        ],
        "--mca \"-x=1\": key \"-x\" must not start with '-'",
    );
}

#[test]
fn a_missing_or_bad_hostfile() {
    fails_with(
        &["--hostfile", "/nonexistent/hosts", "--", "./hello"],
        "--hostfile /nonexistent/hosts: ",
    );
    let tmp = TempDir::new("bad-hostfile");
    let file = tmp.path("hosts");
    fs::write(&file, "h1 slots=2\nmpi@h2 slots=1\n").unwrap();
    let file = file.display().to_string();
    fails_with(
        &["--hostfile", &file, "--", "./hello"],
        &format!(
            "--hostfile {file}: line 2 \"mpi@h2 slots=1\": host \"mpi@h2\" contains '@'; give a host name or an address"
        ),
    );
    fails_with(
        &["--hostfile", &file, "--hosts", "h1", "--", "./hello"],
        "--hosts and --hostfile both given; give one or the other",
    );
}

/// `--mpi-implementation intel` with an Open MPI mpirun in `--mpi-home`:
/// what was asked, what was found and where, before any wait.
#[test]
fn intel_asked_but_mpirun_is_open_mpis() {
    let tmp = TempDir::new("launcher-mismatch");
    let home = common::hosts::mpi_home(&tmp, "openmpi");
    let home = home.display().to_string();
    fails_with(
        &[
            "--hosts",
            "h1",
            "--mpi-implementation",
            "intel",
            "--mpi-home",
            &home,
            "--",
            "./hello",
        ],
        &format!(
            "--mpi-implementation intel: but {home}/bin/mpirun is Open MPI's mpirun (its --version says so); point --mpi-home, or PATH, at Intel MPI's, or give --mpi-implementation openmpi"
        ),
    );
}
