//! The launcher's benchmark, across network namespaces with real dnsmasq,
//! sshd and Open MPI (see agent/README.md). Prints:
//! - reaction time: the last worker's sshd accepting (its PidFile's mtime,
//!   written once it listens) to mpirun starting (a stand-in mpirun that
//!   records the clock), median of 20 runs; target <= 100 ms;
//! - wall time of the hello job on 4 workers through the agents against
//!   bare mpirun with the same hostfile and ssh config, median of 5 each;
//!   target ratio <= 1.2;
//! - launcher start to mpirun start with 64 workers already up, median of
//!   5 runs; target <= 1 s. The 64 sshds share one namespace with 64
//!   addresses: 64 namespaces work too, but cost far more set-up time than
//!   they tell.
//!
//! Run as root: `cargo bench -p mpijob-agent --bench launcher` or
//! `scripts/bench-launcher.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::hosts::{self, Host, Net, Proc};
use common::*;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// An MPI home whose mpirun only records when it started, in `$MARK`.
fn fake_mpi_home(tmp: &TempDir) -> PathBuf {
    let home = tmp.path("fake-mpi");
    fs::create_dir_all(home.join("bin")).unwrap();
    let mpirun = home.join("bin/mpirun");
    fs::write(
        &mpirun,
        "#!/bin/sh\ncase \"$1\" in --version) echo 'mpirun (Open MPI) 4.1.4'; exit 0;; esac\n\
         date +%s.%N > \"$MARK\"\n",
    )
    .unwrap();
    fs::set_permissions(&mpirun, fs::Permissions::from_mode(0o755)).unwrap();
    home
}

fn worker(net: &Net, host: &Host, secret: &Path, state: &Path, listen: Option<&str>) -> Proc {
    let _ = fs::remove_dir_all(state);
    let mut cmd = net.command(host, AGENT);
    cmd.arg("worker")
        .arg("--ssh-dir")
        .arg(secret)
        .args(["--port", "2222", "--grace-period", "1s"])
        .arg("--state-dir")
        .arg(state)
        .arg("--finish-file")
        .arg(state.with_extension("finished"));
    if let Some(addr) = listen {
        cmd.args(["--listen", addr]);
    }
    cmd.arg("--sshd-option").arg("MaxStartups 200:30:400");
    let mut p = Proc::spawn_quiet(cmd);
    p.wait_for("ready: sshd accepts connections", Duration::from_secs(30));
    p
}

fn launcher(net: &Net, host: &Host, n: usize, secret: &Path, home: &Path, cmd: &[&str]) -> Command {
    let mut c = net.command(host, AGENT);
    c.args(["launcher", "--job", "pi", "--namespace", "team"])
        .arg("--workers")
        .arg(n.to_string())
        .arg("--ssh-dir")
        .arg(secret)
        .arg("--state-dir")
        .arg(net.tmp.path("launcher"))
        .arg("--mpi-home")
        .arg(home)
        .arg("--termination-log")
        .arg(net.tmp.path("termination-log"))
        .args(["--timeout", "60s", "--"])
        .args(cmd);
    c
}

fn mark_time(mark: &Path) -> f64 {
    fs::read_to_string(mark)
        .unwrap()
        .trim()
        .parse::<f64>()
        .unwrap()
}

fn reaction() -> f64 {
    let mut net = Net::new("bench-react");
    let secret = secret_dir(&net.tmp, "secret", None);
    let home = fake_mpi_home(&net.tmp);
    let l = net.add_host("pi-launcher");
    let w: Vec<Host> = (0..2)
        .map(|i| net.add_host(&format!("pi-worker-{i}")))
        .collect();
    for (i, h) in w.iter().enumerate() {
        net.publish(&format!("pi-worker-{i}.pi.team.svc"), &h.addr);
    }
    let _w0 = worker(&net, &w[0], &secret, &net.tmp.path("w0"), None);
    let mark = net.tmp.path("mark");
    let mut samples = Vec::new();
    for _ in 0..20 {
        let _ = fs::remove_file(&mark);
        let mut cmd = launcher(&net, &l, 2, &secret, &home, &["./job"]);
        cmd.env("MARK", &mark);
        let mut run = Proc::spawn_quiet(cmd);
        // Let it settle into polling a refusing port.
        std::thread::sleep(Duration::from_millis(400));
        let state = net.tmp.path("w1");
        let w1 = worker(&net, &w[1], &secret, &state, None);
        let status = run.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "{}", run.stderr());
        let accepted = fs::metadata(state.join("sshd.pid"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        samples.push(mark_time(&mark) - accepted);
        // SIGTERM, so that the agent takes its sshd with it.
        let mut w1 = w1;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w1.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        w1.wait_exit(Duration::from_secs(10));
    }
    median(samples)
}

fn wall_time() -> (f64, f64) {
    let mut net = Net::new("bench-wall");
    let secret = secret_dir(&net.tmp, "secret", None);
    let home = hosts::mpi_home(&net.tmp, "openmpi");
    let hello = hosts::compile_hello(&net.tmp, &home, "hello");
    let l = net.add_host("pi-launcher");
    let w: Vec<Host> = (0..4)
        .map(|i| net.add_host(&format!("pi-worker-{i}")))
        .collect();
    let mut agents = Vec::new();
    for (i, h) in w.iter().enumerate() {
        net.publish(&format!("pi-worker-{i}.pi.team.svc"), &h.addr);
        agents.push(worker(
            &net,
            h,
            &secret,
            &net.tmp.path(&format!("w{i}")),
            None,
        ));
    }
    let hello = hello.display().to_string();
    let (mut agent, mut bare) = (Vec::new(), Vec::new());
    for round in 0..6 {
        let start = Instant::now();
        let mut run = Proc::spawn_quiet(launcher(&net, &l, 4, &secret, &home, &[&hello]));
        let status = run.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{}", run.stderr());
        let t_agent = start.elapsed().as_secs_f64();
        // Bare mpirun: the same hostfile and ssh config, nothing waited for.
        let state = net.tmp.path("launcher");
        let start = Instant::now();
        let out = net
            .command(&l, home.join("bin/mpirun"))
            .arg("--allow-run-as-root")
            .arg("--hostfile")
            .arg(state.join("hostfile"))
            .args(["--mca", "plm_rsh_agent"])
            .arg(format!("ssh -F {}", state.join("ssh_config").display()))
            .args(["--mca", "orte_keep_fqdn_hostnames", "1"])
            .args(["--mca", "plm_rsh_no_tree_spawn", "1"])
            .arg(&hello)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let t_bare = start.elapsed().as_secs_f64();
        if round > 0 {
            // The first round warms caches for both.
            agent.push(t_agent);
            bare.push(t_bare);
        }
    }
    (median(agent), median(bare))
}

fn many_workers() -> f64 {
    const N: usize = 64;
    let mut net = Net::new("bench-64");
    let secret = secret_dir(&net.tmp, "secret", None);
    let home = fake_mpi_home(&net.tmp);
    let l = net.add_host("pi-launcher");
    let host = net.add_host("pi-workers");
    let mut agents = Vec::new();
    for i in 0..N {
        let addr = net.add_address(&host);
        net.publish(&format!("pi-worker-{i}.pi.team.svc"), &addr);
        agents.push(worker(
            &net,
            &host,
            &secret,
            &net.tmp.path(&format!("w{i}")),
            Some(&addr),
        ));
    }
    let mark = net.tmp.path("mark");
    let mut samples = Vec::new();
    for _ in 0..5 {
        let _ = fs::remove_file(&mark);
        let mut cmd = launcher(&net, &l, N, &secret, &home, &["./job"]);
        cmd.env("MARK", &mark);
        let start = now();
        let mut run = Proc::spawn_quiet(cmd);
        let status = run.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{}", run.stderr());
        samples.push(mark_time(&mark) - start);
    }
    median(samples)
}

fn main() {
    require_tools();
    // `cargo bench` passes --bench; nothing else to parse.
    let react = reaction();
    println!(
        "reaction time, last sshd accepting -> mpirun start (median of 20): {:.1} ms (target <= 100 ms)",
        react * 1000.0
    );
    let (agent, bare) = wall_time();
    println!(
        "hello on 4 workers, wall time (median of 5): agent {:.0} ms, bare mpirun {:.0} ms, ratio {:.2} (target <= 1.2)",
        agent * 1000.0,
        bare * 1000.0,
        agent / bare
    );
    let many = many_workers();
    println!(
        "64 workers up, launcher start -> mpirun start (median of 5): {:.0} ms (target <= 1000 ms)",
        many * 1000.0
    );
}
