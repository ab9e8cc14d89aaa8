//! `mpijob-agent wait`, the init container of a Kubeflow MPIJob's
//! launcher, against real hosts on one machine: network namespaces with
//! their own addresses and hostnames, a real dnsmasq, and worker agents
//! running the real sshd. The wait itself runs in the launcher's namespace
//! with the launcher's hostname, as it would in the launcher pod.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::hosts::{Host, Net, Proc};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const JOB: &str = "pi";
const NS: &str = "team";

fn fqdn(pod: &str) -> String {
    format!("{pod}.{JOB}.{NS}.svc")
}

/// A launcher host and `n` worker hosts, none of them started.
struct Job {
    net: Net,
    secret: PathBuf,
    launcher: Host,
    workers: Vec<Host>,
    agents: Vec<Proc>,
}

impl Job {
    fn new(tag: &str, n: usize) -> Job {
        require_tools();
        let mut net = Net::new(tag);
        let secret = secret_dir(&net.tmp, "secret", None);
        let launcher = net.add_host("pi-launcher");
        net.publish(&fqdn("pi-launcher"), &launcher.addr);
        let workers = (0..n)
            .map(|i| net.add_host(&format!("pi-worker-{i}")))
            .collect();
        Job {
            net,
            secret,
            launcher,
            workers,
            agents: Vec::new(),
        }
    }

    /// Publish worker `i`'s name and start its sshd on 2222; wait until
    /// it is ready.
    fn start_worker(&mut self, i: usize) {
        let w = &self.workers[i];
        self.net.publish(&fqdn(&w.hostname), &w.addr);
        let state = self.net.tmp.path(&format!("worker-{i}"));
        let mut cmd = self.net.command(w, AGENT);
        cmd.arg("worker")
            .arg("--ssh-dir")
            .arg(&self.secret)
            .args(["--port", "2222"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--finish-file")
            .arg(state.with_extension("finished"));
        let mut agent = Proc::spawn(cmd);
        agent.wait_for("ready: sshd accepts connections", Duration::from_secs(10));
        self.agents.push(agent);
    }

    fn hostfile(&self, text: &str) -> PathBuf {
        let path = self.net.tmp.path("hostfile");
        fs::write(&path, text).unwrap();
        path
    }

    /// `mpijob-agent wait` on the launcher host.
    fn wait(&self, hostfile: &Path, timeout: &str) -> Proc {
        let mut cmd = self.net.command(&self.launcher, AGENT);
        cmd.arg("wait")
            .arg(format!("--hostfile={}", hostfile.display()))
            .args(["--timeout", timeout])
            .env_remove("MPIJOB_SSH_PORT")
            .env_remove("MPIJOB_HOSTFILE");
        Proc::spawn(cmd)
    }
}

#[test]
fn every_worker_up_exits_0_and_the_launcher_itself_is_skipped() {
    let mut job = Job::new("wait-up", 2);
    job.start_worker(0);
    job.start_worker(1);
    // Kubeflow's Open MPI hostfile under runLauncherAsWorker: the launcher
    // first. Its name resolves, but nothing listens there: only skipping
    // it lets the wait end.
    let hostfile = job.hostfile(&format!(
        "{} slots=1\n{} slots=2\n{} slots=2\n",
        fqdn("pi-launcher"),
        fqdn("pi-worker-0"),
        fqdn("pi-worker-1"),
    ));
    let mut wait = job.wait(&hostfile, "30s");
    let status = wait.wait_exit(Duration::from_secs(30));
    let err = wait.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "skipping {}: it is this host (pi-launcher)",
            fqdn("pi-launcher")
        )),
        "{err}"
    );
    let all_up = format!(
        "all 2 workers in {} answer on port 2222 after ",
        hostfile.display()
    );
    assert!(err.contains(&all_up), "{err}");
}

#[test]
fn hydra_hostfile_with_a_late_worker_is_waited_for() {
    let mut job = Job::new("wait-late", 2);
    job.start_worker(0);
    // MPICH's and Intel MPI's syntax, with a Hydra option and comments.
    let hostfile = job.hostfile(&format!(
        "# Kubeflow hostfile\n{}:2\n{}:2 ifhn=eth0 # the late one\n",
        fqdn("pi-worker-0"),
        fqdn("pi-worker-1"),
    ));
    let mut wait = job.wait(&hostfile, "30s");
    wait.wait_for(
        "waiting for 1/2 workers: pi-worker-1 (no DNS record)",
        Duration::from_secs(10),
    );
    assert!(wait.child.try_wait().unwrap().is_none(), "exited early");
    job.start_worker(1);
    let status = wait.wait_exit(Duration::from_secs(30));
    let err = wait.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("all 2 workers in "), "{err}");
}

#[test]
fn a_worker_that_never_answers_fails_at_the_timeout_and_is_named() {
    let mut job = Job::new("wait-never", 2);
    job.start_worker(0);
    // Worker 1 resolves, but no sshd runs there.
    job.net.publish(&fqdn("pi-worker-1"), &job.workers[1].addr);
    let hostfile = job.hostfile(&format!(
        "{} slots=1\n{} slots=1\n",
        fqdn("pi-worker-0"),
        fqdn("pi-worker-1"),
    ));
    let mut wait = job.wait(&hostfile, "1s");
    let status = wait.wait_exit(Duration::from_secs(20));
    let elapsed = wait.started.elapsed();
    let err = wait.stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    let want = format!(
        "--timeout 1s: 1/2 workers never came up: {} (connection refused); check that those \
         workers run sshd on port 2222",
        fqdn("pi-worker-1")
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("all 2 workers"), "{err}");
}

#[test]
fn sigterm_while_waiting_gives_143_at_once() {
    let job = Job::new("wait-term", 1);
    let hostfile = job.hostfile(&format!("{} slots=1\n", fqdn("pi-worker-0")));
    let mut wait = job.wait(&hostfile, "60s");
    wait.wait_for("waiting for 1/1 workers", Duration::from_secs(10));
    kill(Pid::from_raw(wait.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait.wait_exit(Duration::from_secs(2));
    let err = wait.stderr();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains("received SIGTERM while waiting for the workers; exit code 143"),
        "{err}"
    );
}

/// `mpijob-agent wait` with `hostname` as this machine's name (a private
/// UTS namespace) and `args`; no network needed.
fn run_wait(hostname: &str, args: &[&str]) -> std::process::Output {
    require_tools();
    Command::new("unshare")
        .args(["--uts", "--", "sh", "-c", "hostname \"$0\" && exec \"$@\""])
        .arg(hostname)
        .arg(AGENT)
        .arg("wait")
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("MPIJOB_LOG_FORMAT")
        .env_remove("MPIJOB_SSH_PORT")
        .env_remove("MPIJOB_TIMEOUT")
        .output()
        .unwrap()
}

#[test]
fn a_bad_hostfile_exits_2_and_names_the_file_and_line() {
    let tmp = TempDir::new("wait-bad");
    let file = tmp.path("hostfile");
    fs::write(&file, "# workers\nh0 slots=1\nh1 slots=x\n").unwrap();
    let out = run_wait("pi-launcher", &[&format!("--hostfile={}", file.display())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = format!(
        "{}: line 3 \"h1 slots=x\": slots must be a positive whole number, e.g. h1 slots=2",
        file.display()
    );
    assert!(err.contains(&want), "{err}");

    fs::write(&file, "# nothing here\n\n").unwrap();
    let out = run_wait("pi-launcher", &[&format!("--hostfile={}", file.display())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: no hosts: every line is blank or a comment",
            file.display()
        )),
        "{err}"
    );

    let missing = tmp.path("missing");
    let out = run_wait(
        "pi-launcher",
        &[&format!("--hostfile={}", missing.display())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: cannot read the hostfile: no such file or directory; mount the job's hostfile there",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn a_hostfile_of_only_this_host_exits_0_at_once() {
    let tmp = TempDir::new("wait-self");
    let file = tmp.path("hostfile");
    fs::write(&file, format!("{}:4\n", fqdn("pi-launcher"))).unwrap();
    let started = std::time::Instant::now();
    let out = run_wait("pi-launcher", &[&format!("--hostfile={}", file.display())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    eprintln!(
        "wait with only itself in the hostfile: {:?}",
        started.elapsed()
    );
    assert!(
        err.contains(&format!("no other host in {} to wait for", file.display())),
        "{err}"
    );
}
