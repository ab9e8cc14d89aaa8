//! Local mode's benchmark (see agent/README.md). Prints, for the pi example
//! on 2 and on 8 workers:
//! - the wall time of `mpijob-agent local`, median of 5, next to bare
//!   mpirun on the same program over sshds started by hand in the same
//!   namespaces (those of a `--keep` run), median of 5, and their ratio
//!   (target <= 1.05 for 8 workers). With more ranks than cores, both
//!   run with `OMPI_MCA_mpi_yield_when_idle=1`, as local mode sets it;
//! - local mode's set-up (start to the last sshd ready) and tear-down
//!   (launcher exit to everything removed) per worker, in ms, from its
//!   debug timing lines.
//!
//! With a number (`scripts/bench-local.sh 256`), instead: one run of the
//! hello program on that many workers, printing the set-up time (to the
//! last sshd ready), the job's time, which ranks ran on which hosts, the
//! memory per worker (the machine's MemAvailable before the run against
//! its lowest while the hosts are up and while the ranks run), and what
//! the tear-down left (namespaces, links, processes; target: nothing).
//!
//! With `imb` (`scripts/bench-local.sh imb`), instead: the Intel MPI
//! Benchmarks' PingPong and Allreduce on 2 workers through local mode,
//! against the same IMB-MPI1 started by hand with Intel's mpirun over bare
//! sshds in the same namespaces, and their ratios (target: 1.00, since
//! the agent is not in the data path).
//!
//! Run as root: `scripts/bench-local.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hosts::{self, net};
use common::*;

const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// The microseconds local mode's debug line `timing: <what> N us` gives.
fn timing(err: &str, what: &str) -> f64 {
    let at = err
        .find(&format!("timing: {what} "))
        .unwrap_or_else(|| panic!("no {what} timing:\n{err}"));
    let rest = &err[at + what.len() + 9..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Where a local run's time goes, in us from its start: the phases of
/// its debug timing lines, and mpirun's start from the launcher's log.
const PHASES: [&str; 5] = [
    "network",
    "workers started",
    "launcher started",
    "set-up",
    "mpirun started",
];

fn phases(err: &str) -> Vec<f64> {
    let start = logged_at(err, "timing: files ") * 1e6 - timing(err, "files");
    PHASES
        .iter()
        .map(|p| match *p {
            "mpirun started" => logged_at(err, "INFO starting /") * 1e6 - start,
            p => timing(err, p),
        })
        .collect()
}

/// One `local` run: (wall s, set-up us, tear-down us, stderr).
fn local(manifest: &Path, n: u32, extra: &[&str]) -> (f64, f64, f64, String) {
    let (wall, setup, teardown, _, err) = local_in(manifest, n, extra, &[]);
    (wall, setup, teardown, err)
}

/// [`local`] with `env` on top of this process's, and its stdout:
/// (wall s, set-up us, tear-down us, stdout, stderr).
fn local_in(
    manifest: &Path,
    n: u32,
    extra: &[&str],
    env: &[(String, String)],
) -> (f64, f64, f64, String, String) {
    let t0 = Instant::now();
    let out = Command::new(AGENT)
        .envs(env.iter().cloned())
        .arg("local")
        .arg("-f")
        .arg(manifest)
        .args(["--workers", &n.to_string()])
        .args(extra)
        .env("RUST_LOG", "info,mpijob_agent::local=debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let (setup, teardown) = (timing(&err, "set-up"), timing(&err, "tear-down"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (wall, setup, teardown, stdout, err)
}

/// A `--keep` run's namespaces, with sshds started by hand on its workers
/// (the agent's own configs, run as bare `sshd -D`).
struct Kept {
    id: String,
    dir: std::path::PathBuf,
    n: u32,
    sshds: Vec<std::process::Child>,
}

impl Kept {
    fn start(manifest: &Path, n: u32, env: &[(String, String)]) -> Kept {
        let (_, _, _, _, err) = local_in(manifest, n, &["--keep"], env);
        let at = err.find("local: run ").unwrap();
        let id = err[at + 11..at + 17].to_string();
        let dir = std::env::temp_dir().join(format!("mpijob-local-{id}"));
        let mut kept = Kept {
            id,
            dir,
            n,
            sshds: Vec::new(),
        };
        for i in 0..n {
            let state = kept.dir.join(format!("pi-worker-{i}"));
            let _ = fs::remove_file(state.join("sshd.pid"));
            kept.sshds.push(
                Command::new(hosts::IP)
                    .args(["netns", "exec", &kept.ns(&format!("w{i}"))])
                    .args(["/usr/sbin/sshd", "-D", "-e", "-f"])
                    .arg(state.join("sshd_config"))
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        for i in 0..n {
            let pid = kept.dir.join(format!("pi-worker-{i}/sshd.pid"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while !pid.exists() {
                assert!(Instant::now() < deadline, "sshd {i} did not start");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        kept
    }

    fn ns(&self, host: &str) -> String {
        format!("mpijob-{}-{host}", self.id)
    }

    /// The workers' addresses, in order.
    fn workers(&self) -> Vec<String> {
        (0..self.n)
            .map(|i| format!("198.18.0.{}", 10 + i))
            .collect()
    }

    /// Plain ssh with the run's key, no host checking, port 2222.
    fn ssh_options(&self) -> String {
        format!(
            "-F /dev/null -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -p 2222",
            self.dir.join("ssh/id_ed25519").display()
        )
    }

    fn remove(mut self) {
        for s in &mut self.sshds {
            let _ = s.kill();
            let _ = s.wait();
        }
        let names: Vec<String> = ["launcher", "dns"]
            .iter()
            .map(|h| self.ns(h))
            .chain((0..self.n).map(|i| self.ns(&format!("w{i}"))))
            .collect();
        let ids: Vec<(u64, u64)> = names
            .iter()
            .filter_map(|n| net::netns_identity(n))
            .collect();
        net::kill_all_in(&ids, Duration::from_secs(2), || {});
        hosts::ip_batch(
            None,
            &net::delete_commands(Some(&format!("mjl-{}", self.id)), &names),
        )
        .unwrap();
        fs::remove_dir_all(&self.dir).unwrap();
    }
}

/// Bare mpirun over sshds started by hand in a `--keep` run's namespaces.
fn bare(manifest: &Path, n: u32, pi: &Path) -> f64 {
    let kept = Kept::start(manifest, n, &[]);
    let hostfile: String = kept
        .workers()
        .iter()
        .map(|w| format!("{w} slots=1\n"))
        .collect();
    fs::write(kept.dir.join("bare-hostfile"), hostfile).unwrap();
    let agent = format!("ssh {}", kept.ssh_options());
    // The same as local mode sets with more ranks than cores (one rank a
    // worker here).
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let yield_when_idle = if n as usize > cores { "1" } else { "0" };
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = Command::new(hosts::IP)
            .env("OMPI_MCA_mpi_yield_when_idle", yield_when_idle)
            .args(["netns", "exec", &kept.ns("launcher")])
            .args(["mpirun.openmpi", "--allow-run-as-root", "--hostfile"])
            .arg(kept.dir.join("bare-hostfile"))
            .args(["--mca", "plm_rsh_agent", &agent])
            .args(["--mca", "plm_rsh_no_tree_spawn", "1"])
            .arg(pi)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        times.push(t0.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "bare mpirun: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    kept.remove();
    median(times)
}

/// MemAvailable, in MiB.
fn mem_available() -> f64 {
    let info = fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = info
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// The pi example's manifest, with `program` as its command, in `tmp`.
fn pi_manifest_running(tmp: &TempDir, program: &Path) -> std::path::PathBuf {
    let manifest = tmp.path("job.yaml");
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.yaml"))
            .unwrap()
            .replace("/opt/mpi-examples/pi", program.to_str().unwrap());
    fs::write(&manifest, text).unwrap();
    manifest
}

/// One run at scale: see the top of this file.
fn at_scale(n: u32) {
    let tmp = TempDir::new("bench-local-scale");
    let home = hosts::mpi_home(&tmp, "openmpi");
    let hello = hosts::compile_hello(&tmp, &home, "hello");
    let manifest = pi_manifest_running(&tmp, &hello);
    let before = mem_available();
    let mut child = Command::new(AGENT)
        .arg("local")
        .arg("-f")
        .arg(&manifest)
        .args(["--workers", &n.to_string(), "--timeout", "10m"])
        .env("RUST_LOG", "info,mpijob_agent::local=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::thread::spawn({
        let mut stdout = child.stdout.take().unwrap();
        move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
            s
        }
    });
    let err = std::thread::spawn({
        let mut stderr = child.stderr.take().unwrap();
        move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
            s
        }
    });
    // The lowest MemAvailable: sampled until the process ends.
    let t0 = Instant::now();
    let mut lowest = before;
    let status = loop {
        lowest = lowest.min(mem_available());
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = t0.elapsed().as_secs_f64();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{err}");
    let secs = |what: &str| timing(&err, what) / 1e6;
    let mut hosts_of_ranks: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 6 && w[0] == "rank").then(|| (w[1].parse().unwrap(), w[5].to_string()))
        })
        .collect();
    hosts_of_ranks.sort();
    let ranks: Vec<u32> = hosts_of_ranks.iter().map(|(r, _)| *r).collect();
    let hosts: std::collections::BTreeSet<&str> =
        hosts_of_ranks.iter().map(|(_, h)| h.as_str()).collect();
    let expected: Vec<u32> = (0..n).collect();
    let left_netns = hosts::run(Command::new(hosts::IP).args(["netns", "list"]))
        .lines()
        .filter(|l| l.starts_with("mpijob-"))
        .count();
    let left_links = hosts::run(Command::new(hosts::IP).args(["-o", "link", "show"]))
        .lines()
        .filter(|l| l.contains(": mj"))
        .count();
    println!("local mode at scale: hello on {n} workers, one rank each, one run");
    println!(
        "  ranks: {} of {n} ran, on {} distinct hosts ({})",
        ranks.len(),
        hosts.len(),
        if ranks == expected && hosts.len() == n as usize {
            "each rank on its own worker: ok"
        } else {
            "MISSED"
        }
    );
    println!(
        "  set-up (start to the last sshd ready): {:.1} s (target <= 30 s); job: {:.1} s; tear-down: {:.1} s",
        secs("set-up"),
        wall,
        secs("tear-down")
    );
    println!(
        "  memory: {:.0} MiB at the peak, {:.1} MiB per worker (MemAvailable {:.0} MiB before, {:.0} MiB at its lowest)",
        before - lowest,
        (before - lowest) / n as f64,
        before,
        lowest
    );
    println!("  left behind: {left_netns} network namespaces, {left_links} links (target: none)");
}

/// The rows of IMB's table for `benchmark` in `out`: its numbers, by
/// column (`#bytes`, `#repetitions`, then the times or the rate).
fn imb_table(out: &str, benchmark: &str) -> Vec<Vec<f64>> {
    let at = out
        .find(&format!("# Benchmarking {benchmark}"))
        .unwrap_or_else(|| panic!("no {benchmark} table in:\n{out}"));
    out[at..]
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("#bytes"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
        .collect()
}

/// The figures taken from one IMB run: PingPong's latency at 0 bytes
/// (us) and bandwidth at 4 MiB (MB/s), Allreduce's mean time at 1 KiB
/// and at 4 MiB (us).
fn imb_figures(out: &str) -> [f64; 4] {
    let ping = imb_table(out, "PingPong");
    let all = imb_table(out, "Allreduce");
    let row = |t: &[Vec<f64>], bytes: f64| -> Vec<f64> {
        t.iter()
            .find(|r| r[0] == bytes)
            .unwrap_or_else(|| panic!("no {bytes}-byte row in {t:?}"))
            .clone()
    };
    [
        row(&ping, 0.0)[2],
        row(&ping, 4194304.0)[3],
        row(&all, 1024.0)[4],
        row(&all, 4194304.0)[4],
    ]
}

/// The Intel MPI Benchmarks' PingPong and Allreduce on 2 workers, Intel
/// MPI from PyPI: through local mode (the agent's sshd and launcher), and
/// the same IMB-MPI1 started by hand with Intel's mpirun over bare sshds in
/// the same namespaces. Medians of RUNS each, and their ratios.
fn imb() {
    let venv = venv(VENV_INTEL);
    let env = venv_env(&venv);
    let tmp = TempDir::new("bench-imb");
    let manifest = tmp.path("imb.yaml");
    fs::write(
        &manifest,
        "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata: {name: pi, namespace: bench}\n\
         spec:\n  worker:\n    replicas: 2\n    cmd: [IMB-MPI1, PingPong, Allreduce]\n\
         \x20   template: {spec: {containers: [{name: w, image: mpijob/intel:latest}]}}\n",
    )
    .unwrap();
    let mut through: Vec<[f64; 4]> = Vec::new();
    for _ in 0..RUNS {
        let (_, _, _, out, _) = local_in(&manifest, 2, &[], &env);
        through.push(imb_figures(&out));
    }
    let kept = Kept::start(&manifest, 2, &env);
    // Intel's bootstrap proxies call back on the launcher's interface;
    // `ip netns exec` keeps this machine's hostname, which no worker knows.
    let addrs = hosts::run(Command::new(hosts::IP).args([
        "-n",
        &kept.ns("launcher"),
        "-o",
        "-4",
        "addr",
        "show",
    ]));
    let iface = addrs
        .lines()
        .find(|l| l.contains("inet 198.18.0.2/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no launcher address in:\n{addrs}"))
        .to_string();
    let hosts = kept.workers().join(",");
    let mut by_hand: Vec<[f64; 4]> = Vec::new();
    for _ in 0..RUNS {
        let out = Command::new(hosts::IP)
            .envs(env.iter().cloned())
            .args(["netns", "exec", &kept.ns("launcher")])
            .args([
                "mpirun", "-hosts", &hosts, "-ppn", "1", "-n", "2", "-iface", &iface,
            ])
            .args(["-bootstrap-exec-args", &kept.ssh_options()])
            .args(["IMB-MPI1", "PingPong", "Allreduce"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "IMB by hand: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        by_hand.push(imb_figures(&text));
    }
    kept.remove();
    let names = [
        ("PingPong latency, 0 B", "us"),
        ("PingPong bandwidth, 4 MiB", "MB/s"),
        ("Allreduce mean time, 1 KiB", "us"),
        ("Allreduce mean time, 4 MiB", "us"),
    ];
    println!("IMB-MPI1 on 2 workers, Intel MPI from PyPI, median of {RUNS}: through local mode (the agent) against the same binary by hand over bare sshds in the same namespaces");
    for (i, (name, unit)) in names.iter().enumerate() {
        let a = median(through.iter().map(|f| f[i]).collect());
        let b = median(by_hand.iter().map(|f| f[i]).collect());
        println!(
            "  {name}: through the agent {a:.2} {unit}, by hand {b:.2} {unit}, ratio {:.2}",
            a / b
        );
    }
}

fn main() {
    require_tools();
    hosts::require_net_tools();
    if std::env::args().skip(1).any(|a| a == "imb") {
        imb();
        return;
    }
    if let Some(n) = std::env::args().skip(1).find_map(|a| a.parse::<u32>().ok()) {
        at_scale(n);
        return;
    }
    let tmp = TempDir::new("bench-local");
    let pi = tmp.path("pi");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.c");
    hosts::run(
        Command::new("mpicc.openmpi")
            .args(["-O2", "-o"])
            .arg(&pi)
            .arg(src),
    );
    let manifest = pi_manifest_running(&tmp, &pi);

    println!(
        "local mode, pi example ({} steps), median of {RUNS}:",
        100_000_000
    );
    for n in [2u32, 8] {
        let mut walls = Vec::new();
        let mut setups = Vec::new();
        let mut teardowns = Vec::new();
        let mut split: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len() + 1];
        for _ in 0..RUNS {
            let (w, s, t, err) = local(&manifest, n, &[]);
            for (i, us) in phases(&err).into_iter().enumerate() {
                split[i].push(us / 1000.0);
            }
            split[PHASES.len()].push(t / 1000.0);
            walls.push(w);
            setups.push(s / 1000.0 / n as f64);
            teardowns.push(t / 1000.0 / n as f64);
        }
        let local_wall = median(walls);
        let bare_wall = bare(&manifest, n, &pi);
        println!(
            "  {n} workers: local {:.3} s, bare mpirun {:.3} s, ratio {:.2}{}",
            local_wall,
            bare_wall,
            local_wall / bare_wall,
            if n == 8 { " (target <= 1.05)" } else { "" }
        );
        println!(
            "  {n} workers: set-up {:.1} ms per worker, tear-down {:.1} ms per worker",
            median(setups),
            median(teardowns)
        );
        let at: Vec<String> = PHASES
            .iter()
            .zip(&split)
            .map(|(p, v)| format!("{p} {:.0} ms", median(v.clone())))
            .collect();
        println!(
            "  {n} workers, ms from the start (medians): {}; then after mpirun: tear-down {:.0} ms",
            at.join(", "),
            median(split[PHASES.len()].clone())
        );
    }
}
