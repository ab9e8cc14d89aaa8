//! Local mode's benchmark (see agent/README.md). Prints, for the pi example
//! on 2 and on 8 workers:
//! - the wall time of `mpijob-agent local`, median of 5, next to bare
//!   mpirun on the same program over sshds started by hand in the same
//!   namespaces (those of a `--keep` run), median of 5, and their ratio
//!   (target <= 1.2 for 8 workers);
//! - local mode's set-up (start to the last sshd ready) and tear-down
//!   (launcher exit to everything removed) per worker, in ms, from its
//!   debug timing lines.
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

/// One `local` run: (wall s, set-up us, tear-down us, stderr).
fn local(manifest: &Path, n: u32, extra: &[&str]) -> (f64, f64, f64, String) {
    let t0 = Instant::now();
    let out = Command::new(AGENT)
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
    let timing = |what: &str| -> f64 {
        let at = err
            .find(&format!("timing: {what} "))
            .unwrap_or_else(|| panic!("no {what} timing:\n{err}"));
        let rest = &err[at + what.len() + 9..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (wall, timing("set-up"), timing("tear-down"), err)
}

/// Bare mpirun over sshds started by hand in a `--keep` run's namespaces.
fn bare(manifest: &Path, n: u32, pi: &Path) -> f64 {
    let (_, _, _, err) = local(manifest, n, &["--keep"]);
    let at = err.find("local: run ").unwrap();
    let id = &err[at + 11..at + 17];
    let dir = std::env::temp_dir().join(format!("mpijob-local-{id}"));
    let ns = |h: &str| format!("mpijob-{id}-{h}");
    let mut sshds = Vec::new();
    let mut hostfile = String::new();
    for i in 0..n {
        let state = dir.join(format!("pi-worker-{i}"));
        let _ = fs::remove_file(state.join("sshd.pid"));
        sshds.push(
            Command::new(hosts::IP)
                .args(["netns", "exec", &ns(&format!("w{i}"))])
                .args(["/usr/sbin/sshd", "-D", "-e", "-f"])
                .arg(state.join("sshd_config"))
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        hostfile += &format!("198.18.0.{} slots=1\n", 10 + i);
    }
    for i in 0..n {
        let pid = dir.join(format!("pi-worker-{i}/sshd.pid"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pid.exists() {
            assert!(Instant::now() < deadline, "sshd {i} did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fs::write(dir.join("bare-hostfile"), hostfile).unwrap();
    let agent = format!(
        "ssh -F /dev/null -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes -p 2222",
        dir.join("ssh/id_ed25519").display()
    );
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = Command::new(hosts::IP)
            .args(["netns", "exec", &ns("launcher")])
            .args(["mpirun.openmpi", "--allow-run-as-root", "--hostfile"])
            .arg(dir.join("bare-hostfile"))
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
    for mut s in sshds {
        let _ = s.kill();
        let _ = s.wait();
    }
    let names: Vec<String> = ["launcher", "dns"]
        .iter()
        .map(|h| ns(h))
        .chain((0..n).map(|i| ns(&format!("w{i}"))))
        .collect();
    let ids: Vec<(u64, u64)> = names
        .iter()
        .filter_map(|n| net::netns_identity(n))
        .collect();
    net::kill_all_in(&ids, Duration::from_secs(2), || {});
    hosts::ip_batch(
        None,
        &net::delete_commands(Some(&format!("mjl-{id}")), &names),
    )
    .unwrap();
    fs::remove_dir_all(&dir).unwrap();
    median(times)
}

fn main() {
    require_tools();
    hosts::require_net_tools();
    let tmp = TempDir::new("bench-local");
    let pi = tmp.path("pi");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.c");
    hosts::run(
        Command::new("mpicc.openmpi")
            .args(["-O2", "-o"])
            .arg(&pi)
            .arg(src),
    );
    let manifest = tmp.path("pi.yaml");
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.yaml"))
            .unwrap()
            .replace("/opt/mpi-examples/pi", pi.to_str().unwrap());
    fs::write(&manifest, text).unwrap();

    println!(
        "local mode, pi example ({} steps), median of {RUNS}:",
        100_000_000
    );
    for n in [2u32, 8] {
        let mut walls = Vec::new();
        let mut setups = Vec::new();
        let mut teardowns = Vec::new();
        for _ in 0..RUNS {
            let (w, s, t, _) = local(&manifest, n, &[]);
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
            if n == 8 { " (target <= 1.2)" } else { "" }
        );
        println!(
            "  {n} workers: set-up {:.1} ms per worker, tear-down {:.1} ms per worker",
            median(setups),
            median(teardowns)
        );
    }
}
