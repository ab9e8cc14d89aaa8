//! `mpijob-agent local`: a whole MPIJob manifest on this machine, through
//! the real binary, with the real sshd, dnsmasq, iproute2 and Open MPI.
//! Every test also checks that the run left nothing behind: no network
//! namespace, bridge or veth, no process, no file, and /etc/ssh unchanged.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hosts::{self, Proc};
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn require_local_tools() {
    require_tools();
    hosts::require_net_tools();
    for (tool, package) in [
        ("/usr/bin/mpicc.openmpi", "libopenmpi-dev"),
        ("/usr/bin/mpirun.openmpi", "openmpi-bin"),
        ("/usr/bin/mpicc.mpich", "libmpich-dev"),
        ("/usr/bin/mpirun.mpich", "mpich"),
        ("/usr/bin/hydra_pmi_proxy", "mpich"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install it with `apt-get install -y {package}`"
        );
    }
}

/// examples/pi compiled into `tmp`.
fn compile_pi(tmp: &TempDir) -> PathBuf {
    let out = tmp.path("pi");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.c");
    hosts::run(
        Command::new("mpicc.openmpi")
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(src),
    );
    out
}

/// A manifest for job `name` running `cmd`, written into `tmp`.
fn manifest(tmp: &TempDir, name: &str, replicas: u32, cmd: &[&str]) -> PathBuf {
    manifest_with(tmp, name, replicas, cmd, &[], None, Era::Seed)
}

/// The schema era a manifest is written in.
#[derive(Clone, Copy, Debug)]
enum Era {
    /// `worker{replicas, extraMPIArgs, cmd, template}`, `mpiHome`.
    Seed,
    /// The seed schema plus `worker.processesPerWorker` and, for Open MPI,
    /// `worker.processRecovery`.
    Pre2023 { processes: u32, recovery: bool },
    /// `mpiConfig{home, extraArgs, script}`, `replicaSpecs`.
    Of2025,
}

/// [`manifest`] with `extraMPIArgs` and `mpiHome`, in schema era `era`.
fn manifest_with(
    tmp: &TempDir,
    name: &str,
    replicas: u32,
    cmd: &[&str],
    extra: &[&str],
    mpi_home: Option<&Path>,
    era: Era,
) -> PathBuf {
    let list = |v: &[&str]| {
        v.iter()
            .map(|c| serde_json::to_string(c).unwrap())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (extra, cmd) = (list(extra), list(cmd));
    let template = "{spec: {containers: [{name: mpi-worker, image: mpijob/openmpi:latest}]}}";
    let home = |key: &str, indent: &str| {
        mpi_home.map_or(String::new(), |h| {
            format!("{indent}{key}: {}\n", h.display())
        })
    };
    let spec = match era {
        Era::Seed | Era::Pre2023 { .. } => {
            let pre_2023 = match era {
                Era::Pre2023 {
                    processes,
                    recovery,
                } => format!(
                    "    processesPerWorker: {processes}\n{}",
                    if recovery {
                        "    processRecovery: {enable: true, limit: 0}\n"
                    } else {
                        ""
                    }
                ),
                _ => String::new(),
            };
            format!(
                "{}  worker:\n    replicas: {replicas}\n{pre_2023}    extraMPIArgs: [{extra}]\n    cmd: [{cmd}]\n    template: {template}\n",
                home("mpiHome", "  ")
            )
        }
        Era::Of2025 => format!(
            "  mpiConfig:\n{}    extraArgs: [{extra}]\n    script: [{cmd}]\n  replicaSpecs:\n    - type: worker\n      replicas: {replicas}\n      template: {template}\n    - type: launcher\n      replicas: 1\n      template: {{}}\n",
            home("home", "    ")
        ),
    };
    let text = format!(
        "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata:\n  name: {name}\n  namespace: team\nspec:\n{spec}"
    );
    let path = tmp.path(&format!("{name}.yaml"));
    fs::write(&path, text).unwrap();
    path
}

/// `/etc/ssh`, file by file: name, size and mtime.
fn etc_ssh() -> Vec<(PathBuf, u64, i64)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, i64)>) {
        use std::os::unix::fs::MetadataExt;
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let m = e.metadata().unwrap();
            out.push((
                e.path(),
                m.size(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            ));
            if m.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let mut v = Vec::new();
    walk(Path::new("/etc/ssh"), &mut v);
    v.sort();
    v
}

/// A run of `mpijob-agent local`.
struct Local {
    proc: Proc,
    etc_ssh: Vec<(PathBuf, u64, i64)>,
}

impl Local {
    fn start(manifest: &Path, extra: &[&str], uid_1000: Option<&Path>) -> Local {
        Local::start_env(manifest, extra, uid_1000, &[])
    }

    /// [`Local::start`], with `env` set on top of this process's.
    fn start_env(
        manifest: &Path,
        extra: &[&str],
        uid_1000: Option<&Path>,
        env: &[(String, String)],
    ) -> Local {
        let etc_ssh = etc_ssh();
        let mut cmd = match uid_1000 {
            Some(agent) => {
                test_user();
                let mut c = Command::new(AS_UID_1000[0]);
                c.args(&AS_UID_1000[1..]).arg(agent);
                c.env_remove("XDG_RUNTIME_DIR");
                c
            }
            None => Command::new(AGENT),
        };
        cmd.envs(env.iter().cloned())
            .arg("local")
            .arg("-f")
            .arg(manifest)
            .args(extra);
        Local {
            proc: Proc::spawn(cmd),
            etc_ssh,
        }
    }

    fn finish(&mut self) -> (i32, String, String) {
        let status = self.proc.wait_exit(Duration::from_secs(120));
        (
            status.code().unwrap_or(-1),
            self.proc.stdout(),
            self.proc.stderr(),
        )
    }

    /// The run id local mode printed.
    fn id(&self) -> String {
        let err = self.proc.stderr();
        let at = err
            .find("local: run ")
            .unwrap_or_else(|| panic!("no run id in:\n{err}"));
        err[at + 11..at + 17].to_string()
    }

    /// Nothing of the run is left.
    fn assert_clean(&self, also: &str) {
        let id = self.id();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let netns = hosts::run(Command::new(hosts::IP).args(["netns", "list"]));
            let links = hosts::run(Command::new(hosts::IP).args(["-o", "link", "show"]));
            let mut left: Vec<String> = Vec::new();
            if netns.contains(&format!("mpijob-{id}")) {
                left.push(format!("namespaces: {netns}"));
            }
            if links.contains(&format!("mjl-{id}")) || links.contains(&format!("mj{id}")) {
                left.push(format!("links: {links}"));
            }
            let dir = std::env::temp_dir().join(format!("mpijob-local-{id}"));
            if dir.exists() {
                left.push(format!("{} exists", dir.display()));
            }
            for needle in [format!("mpijob-local-{id}"), also.to_string()] {
                if needle.is_empty() {
                    continue;
                }
                for (pid, cmd) in processes_mentioning(&needle) {
                    left.push(format!("process {pid}: {cmd}"));
                }
            }
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind by run {id}: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(etc_ssh(), self.etc_ssh, "/etc/ssh changed");
    }
}

/// `rank r of n on host H` lines: (rank, host).
fn ranks(stdout: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 7 && w[0] == "rank" && w[4] == "on" && w[5] == "host")
                .then(|| (w[1].parse().unwrap(), w[6].to_string()))
        })
        .collect();
    v.sort();
    v
}

fn pi(job: &str, workers: u32, uid_1000: bool) {
    require_local_tools();
    let tmp = TempDir::new(&format!("local-{job}"));
    let pi = compile_pi(&tmp);
    // One replica in the manifest: --workers decides.
    let m = manifest(&tmp, job, 1, &[pi.to_str().unwrap(), "1000000"]);
    let agent = uid_1000.then(|| {
        let copy = tmp.path("mpijob-agent");
        fs::copy(AGENT, &copy).unwrap();
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        copy
    });
    let n = workers.to_string();
    let mut run = Local::start(&m, &["--workers", &n], agent.as_deref());
    let (code, out, err) = run.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let got = ranks(&out);
    assert_eq!(got.len(), workers as usize, "{out}\n{err}");
    let hosts: Vec<String> = (0..workers).map(|i| format!("{job}-worker-{i}")).collect();
    for (rank, host) in &got {
        assert!(hosts.contains(host), "rank {rank} on {host}:\n{out}");
        assert_ne!(host, &format!("{job}-launcher"));
    }
    // One rank per worker.
    let mut on: Vec<&String> = got.iter().map(|(_, h)| h).collect();
    on.dedup();
    assert_eq!(on.len(), workers as usize, "{out}");
    assert!(
        out.contains("pi is approximately 3.14159"),
        "stdout:\n{out}"
    );
    assert!(
        err.contains("the container image (mpijob/openmpi:latest) is not used"),
        "{err}"
    );
    assert!(err.contains(&format!("job {job} succeeded")), "{err}");
    if uid_1000 {
        assert!(err.contains("not root, so"), "{err}");
    } else {
        assert!(err.contains("creating"), "{err}");
    }
    run.assert_clean("");
}

/// T9k's API has no slots field: `extraMPIArgs` asks mpirun for 2
/// processes on each of 3 workers, in one of its spellings, and the
/// hostfile the launcher writes must hold them. With MPICH the job's
/// `mpiHome` points at a directory whose `bin/mpirun` is MPICH's.
fn two_ranks_per_worker(job: &str, mpi: Mpi, extra: &[&str]) {
    two_ranks_per_worker_in(job, mpi, extra, Era::Seed);
}

/// The MPI a test runs: Debian's Open MPI (found on PATH), MPICH (through
/// the manifest's `mpiHome`), or Intel MPI from PyPI (its venv on PATH, as
/// a user would set it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mpi {
    Open,
    Mpich,
    Intel,
}

/// [`two_ranks_per_worker`], with the manifest in schema era `era`.
fn two_ranks_per_worker_in(job: &str, mpi: Mpi, extra: &[&str], era: Era) {
    ranks_per_worker_in(job, mpi, extra, era, 2);
}

/// `per_worker` ranks on each of 3 workers.
fn ranks_per_worker_in(job: &str, mpi: Mpi, extra: &[&str], era: Era, per_worker: usize) {
    require_local_tools();
    let tmp = TempDir::new(&format!("local-{job}"));
    let mut env = Vec::new();
    let (pi, home) = if mpi == Mpi::Intel {
        let venv = venv(VENV_INTEL);
        env = venv_env(&venv);
        let pi = tmp.path("pi");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.c");
        hosts::run(
            Command::new(venv.join("bin/mpicc"))
                .envs(env.iter().cloned())
                .args(["-O2", "-o"])
                .arg(&pi)
                .arg(src),
        );
        (pi, None)
    } else if mpi == Mpi::Mpich {
        let pi = tmp.path("pi");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.c");
        hosts::run(
            Command::new("mpicc.mpich")
                .args(["-O2", "-o"])
                .arg(&pi)
                .arg(src),
        );
        let home = tmp.path("mpich");
        fs::create_dir_all(home.join("bin")).unwrap();
        // Hydra looks for its proxy beside its mpirun.
        for (to, from) in [
            ("/usr/bin/mpirun.mpich", "bin/mpirun"),
            ("/usr/bin/hydra_pmi_proxy", "bin/hydra_pmi_proxy"),
        ] {
            std::os::unix::fs::symlink(to, home.join(from)).unwrap();
        }
        (pi, Some(home))
    } else {
        (compile_pi(&tmp), None)
    };
    let m = manifest_with(
        &tmp,
        job,
        3,
        &[pi.to_str().unwrap(), "100000"],
        extra,
        home.as_deref(),
        era,
    );
    let mut run = Local::start_env(&m, &[], None, &env);
    let (code, out, err) = run.finish();
    assert_eq!(code, 0, "{extra:?}\nstdout:\n{out}\nstderr:\n{err}");
    let got = ranks(&out);
    assert_eq!(got.len(), 3 * per_worker, "{extra:?}: {out}\n{err}");
    for i in 0..3 {
        let host = format!("{job}-worker-{i}");
        let n = got.iter().filter(|(_, h)| *h == host).count();
        assert_eq!(n, per_worker, "{extra:?}: {n} ranks on {host}:\n{out}");
    }
    assert!(
        err.contains(&format!("slots={per_worker}")),
        "the launcher says it gives {per_worker} slots: {err}"
    );
    if mpi == Mpi::Intel {
        assert!(err.contains("mpi=\"Intel MPI\""), "{err}");
    }
    run.assert_clean("");
}

#[test]
fn open_mpi_dash_n_per_worker_gets_its_slots() {
    two_ranks_per_worker("npn", Mpi::Open, &["-N", "2"]);
}

#[test]
fn open_mpi_map_by_ppr_gets_its_slots() {
    two_ranks_per_worker("ppr", Mpi::Open, &["--map-by", "ppr:2:node"]);
}

#[test]
fn open_mpi_np_spread_over_the_workers_gets_its_slots() {
    two_ranks_per_worker("np", Mpi::Open, &["-np", "6"]);
}

#[test]
fn open_mpi_processes_per_worker_with_recovery_gets_its_slots() {
    // Pre-2023: processesPerWorker, and processRecovery's mpirun flags.
    let era = Era::Pre2023 {
        processes: 2,
        recovery: true,
    };
    two_ranks_per_worker_in("ppw", Mpi::Open, &[], era);
}

#[test]
fn mpich_processes_per_worker_gets_its_slots() {
    let era = Era::Pre2023 {
        processes: 2,
        recovery: false,
    };
    two_ranks_per_worker_in("mppw", Mpi::Mpich, &[], era);
}

/// Intel MPI's Hydra ignores the counts in its host file and fills each
/// host's cores: one process per worker must still be one rank per worker.
#[test]
fn intel_mpi_one_process_per_worker_is_one_rank_per_worker() {
    let era = Era::Pre2023 {
        processes: 1,
        recovery: false,
    };
    ranks_per_worker_in("ippw1", Mpi::Intel, &[], era, 1);
}

#[test]
fn intel_mpi_processes_per_worker_gets_its_slots() {
    let era = Era::Pre2023 {
        processes: 2,
        recovery: false,
    };
    two_ranks_per_worker_in("ippw", Mpi::Intel, &[], era);
}

#[test]
fn intel_mpi_ppn_gets_its_slots() {
    two_ranks_per_worker("ippn", Mpi::Intel, &["-ppn", "2"]);
}

#[test]
fn open_mpi_in_the_2025_schema_gets_its_slots() {
    two_ranks_per_worker_in("of2025", Mpi::Open, &["-N", "2"], Era::Of2025);
}

#[test]
fn mpich_in_the_2025_schema_gets_its_slots() {
    two_ranks_per_worker_in("m2025", Mpi::Mpich, &["-ppn", "2"], Era::Of2025);
}

/// Debug mode in local mode: the launcher prints the mpirun command and
/// stays up; run by hand inside the launcher's host, it puts one rank on
/// each worker. Ctrl-C ends the run and leaves nothing.
#[test]
fn debug_mode_prints_an_mpirun_command_that_runs_by_hand() {
    require_local_tools();
    let tmp = TempDir::new("local-debug");
    let pi = compile_pi(&tmp);
    let m = manifest(&tmp, "dbg", 2, &[pi.to_str().unwrap(), "100000"]);
    let text = fs::read_to_string(&m).unwrap();
    fs::write(
        &m,
        format!("{text}  runMode: {{debug: {{enable: true}}}}\n"),
    )
    .unwrap();
    let mut run = Local::start(&m, &[], None);
    run.proc
        .wait_for("debug mode: the launcher waits", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let out = run.proc.stdout();
        if let Some(l) = out
            .lines()
            .find(|l| l.starts_with("env ") && l.contains("mpirun"))
        {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no command:\n{out}\n{}",
            run.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = run.proc.stderr();
    let at = err.find("ip netns exec ").expect("says where to run it");
    let ns = err[at + 14..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = hosts::run(Command::new("ip").args(["netns", "exec", &ns, "sh", "-c", &line]));
    let got = ranks(&out);
    let hosts: Vec<&str> = got.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(hosts, ["dbg-worker-0", "dbg-worker-1"], "{line}\n{out}");
    // The job holds until stopped.
    assert!(run.proc.child.try_wait().unwrap().is_none());
    kill(Pid::from_raw(run.proc.child.id() as i32), Signal::SIGINT).unwrap();
    let (code, _, err) = run.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("job dbg: debug mode ended by SIGINT after"),
        "{err}"
    );
    run.assert_clean("");
}

#[test]
fn mpich_ppn_gets_its_slots() {
    two_ranks_per_worker("ppn", Mpi::Mpich, &["-ppn", "2"]);
}

#[test]
fn mpich_n_spread_over_the_workers_gets_its_slots() {
    two_ranks_per_worker("mn", Mpi::Mpich, &["-n", "6"]);
}

#[test]
fn pi_on_2_workers_as_root_runs_one_rank_per_worker_host() {
    pi("pi2", 2, false);
}

#[test]
fn pi_on_4_workers_as_root_runs_one_rank_per_worker_host() {
    pi("pi4", 4, false);
}

#[test]
fn pi_on_2_workers_as_uid_1000_uses_loopback_hosts() {
    pi("piu", 2, true);
}

#[test]
fn a_failing_rank_fails_the_run_with_its_code_and_names_the_command() {
    require_local_tools();
    let tmp = TempDir::new("local-fail");
    let script = r#"if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exit 3; fi; sleep 1"#;
    let m = manifest(&tmp, "failing", 2, &["/bin/sh", "-c", script]);
    let mut run = Local::start(&m, &[], None);
    let (code, out, err) = run.finish();
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    let want = format!("local: job failing failed with exit code 3: `/bin/sh -c {script}`");
    assert!(err.contains(&want), "{err}");
    run.assert_clean("");
}

fn stopped_by(sig: Signal) {
    require_local_tools();
    let tmp = TempDir::new("local-stop");
    // A sleep nobody else runs, to find leftovers by.
    let secs = format!("{}", 7000 + std::process::id() % 1000 + sig as u32);
    let name = format!("stop{}", sig as i32);
    let m = manifest(&tmp, &name, 2, &["/bin/sleep", &secs]);
    let mut run = Local::start(&m, &[], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_mentioning(&format!("sleep {secs}"))
        .iter()
        .filter(|(_, c)| c.starts_with("/bin/sleep"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the ranks did not start:\n{}",
            run.proc.stderr()
        );
        assert!(
            run.proc.child.try_wait().unwrap().is_none(),
            "{}",
            run.proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(run.proc.child.id() as i32), sig).unwrap();
    let t0 = Instant::now();
    let (code, out, err) = run.finish();
    assert_eq!(code, 128 + sig as i32, "stdout:\n{out}\nstderr:\n{err}");
    eprintln!("{sig} to exit: {:?}", t0.elapsed());
    assert!(
        err.contains(&format!("received {sig}: stopping the job")),
        "{err}"
    );
    run.assert_clean(&format!("sleep {secs}"));
}

#[test]
fn sigint_stops_the_job_with_130_and_leaves_nothing() {
    stopped_by(Signal::SIGINT);
}

#[test]
fn sigterm_stops_the_job_with_143_and_leaves_nothing() {
    stopped_by(Signal::SIGTERM);
}

#[test]
fn sigint_while_setting_up_leaves_nothing() {
    require_local_tools();
    let tmp = TempDir::new("local-early");
    let m = manifest(&tmp, "early", 8, &["/bin/true"]);
    let mut run = Local::start(&m, &[], None);
    run.proc.wait_for("local: run ", Duration::from_secs(10));
    kill(Pid::from_raw(run.proc.child.id() as i32), Signal::SIGINT).unwrap();
    let (code, _, err) = run.finish();
    // Set-up may have finished already; either way the run ends as SIGINT
    // says, or as the job did.
    assert!(code == 130 || code == 0, "{code}\n{err}");
    run.assert_clean("");
}

#[test]
fn a_bad_manifest_is_reported_as_the_controller_would_with_2() {
    require_local_tools();
    let tmp = TempDir::new("local-bad");
    let m = tmp.path("bad.yaml");
    fs::write(
        &m,
        "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata:\n  name: bad\nspec:\n  worker:\n    replicas: 0\n    cmd: []\n",
    )
    .unwrap();
    let text = fs::read_to_string(&m).unwrap();
    let want = match mpijob_api::manifest::parse(&text) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the manifest should be bad"),
    };
    let mut run = Local::start(&m, &[], None);
    let (code, out, err) = run.finish();
    assert_eq!(code, 2, "{out}\n{err}");
    assert_eq!(err, format!("{want}\n"));
    assert!(want.lines().count() >= 2, "{want}");
}

#[test]
fn keep_keeps_the_hosts_and_says_how_to_remove_them() {
    require_local_tools();
    let tmp = TempDir::new("local-keep");
    let m = manifest(&tmp, "kept", 1, &["/bin/true"]);
    let mut run = Local::start(&m, &["--keep"], None);
    let (code, _, err) = run.finish();
    assert_eq!(code, 0, "{err}");
    let id = run.id();
    let dir = std::env::temp_dir().join(format!("mpijob-local-{id}"));
    assert!(dir.join("logs").is_dir(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("local: --keep: kept network namespaces"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("(remove: mpijob-agent local --clean, or ip netns del "),
        "{line}"
    );
    assert!(
        processes_mentioning(&format!("mpijob-local-{id}")).is_empty(),
        "processes are never kept"
    );
    // Another run leaves a kept run alone; --clean removes it.
    let other = manifest(&tmp, "other", 1, &["/bin/true"]);
    let mut second = Local::start(&other, &[], None);
    let (code, _, err) = second.finish();
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(&format!("run {id} left")), "{err}");
    assert!(dir.join("logs").is_dir(), "{err}");
    let out = Command::new(AGENT)
        .args(["local", "--clean"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    run.assert_clean("");
}

/// Killed outright (SIGKILL), local mode cannot tear down: its worker
/// agents, their sshds and its launcher die with it (their parent-death
/// signal), and what the kernel keeps (namespaces, the bridge), what lives
/// on in the namespaces (the ranks, dnsmasq) and the directory are removed
/// by the next run, which says so.
#[test]
fn a_run_killed_outright_takes_its_agents_and_the_next_run_removes_the_rest() {
    require_local_tools();
    let tmp = TempDir::new("local-sigkill");
    // A TMPDIR of its own, which the run registers (as root, under
    // /run/mpijob-local), so that any later run finds it.
    let private = tmp.path("tmp");
    fs::create_dir(&private).unwrap();
    let env = [("TMPDIR".to_string(), private.display().to_string())];
    let m = manifest(&tmp, "killed", 2, &["/bin/sleep", "6001"]);
    let mut run = Local::start_env(&m, &[], None, &env);
    run.proc.wait_for("INFO starting ", Duration::from_secs(30));
    let id = run.id();
    let marker = format!("mpijob-local-{id}");
    kill(Pid::from_raw(run.proc.child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = run.proc.wait_exit(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // dnsmasq drops capabilities, which clears its parent-death
        // signal: it stays, in its namespace, for the next run to stop.
        let left: Vec<_> = processes_mentioning(&marker)
            .into_iter()
            .filter(|(_, cmd)| !cmd.starts_with("/usr/sbin/dnsmasq "))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agents outlived local mode: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    {
        // Under the cleaners' lock, so that no other test's run removes
        // them while they are looked at.
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("mpijob-local.lock"))
            .unwrap();
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        let netns = hosts::run(Command::new(hosts::IP).args(["netns", "list"]));
        assert!(
            netns.contains(&format!("mpijob-{id}-")),
            "the kernel keeps the namespaces: {netns}"
        );
        assert!(private.join(&marker).is_dir());
    }
    let next = manifest(&tmp, "next", 1, &["/bin/true"]);
    let mut second = Local::start_env(&next, &[], None, &env);
    let (code, _, err) = second.finish();
    assert_eq!(code, 0, "{err}");
    // This run removes them, or another test's run got there first.
    if err.contains(&format!("removed what run {id} left")) {
        assert!(
            err.contains(&format!(
                "local: removed what run {id} left (its mpijob-agent local is gone): 4 network namespaces, bridge mjl-{id}, {}/mpijob-local-{id}",
                private.display()
            )),
            "{err}"
        );
    }
    assert!(!private.join(&marker).exists());
    assert!(!Path::new("/run/mpijob-local").join(&id).exists());
    run.assert_clean("sleep 6001");
    second.assert_clean("");
}

/// examples/pi/pi.py as an executable `tmp/bin/pi-mpi4py` run by `venv`'s
/// python; the rank finds it by name, so only through `PATH`.
fn mpi4py_pi(tmp: &TempDir, venv: &Path) -> PathBuf {
    let bin = tmp.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let script = bin.join("pi-mpi4py");
    let src =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.py"))
            .unwrap();
    fs::write(&script, format!("#!{}/bin/python3\n{src}", venv.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// MPI and mpi4py from PyPI, in a venv that is only on the `PATH` of
/// `mpijob-agent local` (`PATH=/venv/bin:$PATH mpijob-agent local -f …`),
/// with nothing of it in /usr/bin: the daemons and ranks on the workers
/// find it, and mpi4py, through the environment the workers' sshd passes
/// on. 2 ranks on each of 3 workers, and the pip MPI's library said so.
fn pip_mpi4py(job: &str, venv_name: &str, extra: &[&str], library: &str) {
    require_local_tools();
    let tmp = TempDir::new(&format!("local-{job}"));
    let venv = venv(venv_name);
    let bin = mpi4py_pi(&tmp, &venv);
    let mut env = venv_env(&venv);
    env[0].1 = format!("{}:{}", bin.display(), env[0].1);
    let m = manifest_with(
        &tmp,
        job,
        3,
        &["pi-mpi4py", "100000"],
        extra,
        None,
        Era::Seed,
    );
    let mut run = Local::start_env(&m, &[], None, &env);
    let (code, out, err) = run.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let got = ranks(&out);
    assert_eq!(got.len(), 6, "{out}\n{err}");
    for i in 0..3 {
        let host = format!("{job}-worker-{i}");
        let n = got.iter().filter(|(_, h)| *h == host).count();
        assert_eq!(n, 2, "{n} ranks on {host}:\n{out}");
    }
    let pi = out
        .lines()
        .find(|l| l.starts_with("pi is approximately 3.14159"))
        .unwrap_or_else(|| panic!("no result in:\n{out}"));
    assert!(pi.contains(library), "{pi}");
    run.assert_clean("");
}

#[test]
fn pip_open_mpi_5_runs_mpi4py_from_a_venv_on_path() {
    pip_mpi4py("pipompi", VENV_OPEN_MPI, &["-N", "2"], "Open MPI v5.0.11");
}

#[test]
fn pip_mpich_runs_mpi4py_from_a_venv_on_path() {
    pip_mpi4py("pipmpich", VENV_MPICH, &["-ppn", "2"], "MPICH Version:");
}

/// A real workload: the Intel MPI Benchmarks' PingPong and Allreduce, as
/// pip's Intel MPI ships them, across 2 workers. Both result tables are
/// printed, for 2 processes, and Intel MPI's own pinning report
/// (`I_MPI_DEBUG=4`) puts one rank on each worker.
#[test]
fn intel_mpi_benchmarks_pingpong_and_allreduce_run_one_rank_per_worker() {
    require_local_tools();
    let tmp = TempDir::new("local-imb");
    let mut env = venv_env(&venv(VENV_INTEL));
    env.push(("I_MPI_DEBUG".into(), "4".into()));
    let cmd = ["IMB-MPI1", "-msglog", "12", "PingPong", "Allreduce"];
    let m = manifest_with(&tmp, "imb", 2, &cmd, &[], None, Era::Seed);
    let mut run = Local::start_env(&m, &[], None, &env);
    let (code, out, err) = run.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    for table in ["# Benchmarking PingPong", "# Benchmarking Allreduce"] {
        let at = out
            .find(table)
            .unwrap_or_else(|| panic!("no {table:?} in:\n{out}"));
        let rest = &out[at..];
        assert!(rest.contains("#processes = 2"), "{rest}");
        // The table's last row: 4096 bytes, 2^12.
        assert!(
            rest.lines()
                .any(|l| l.split_whitespace().next() == Some("4096")),
            "{table} has no 4096-byte row:\n{rest}"
        );
    }
    assert_eq!(
        imb_placement(&out),
        [
            (0, "imb-worker-0".to_string()),
            (1, "imb-worker-1".to_string())
        ],
        "{out}"
    );
    run.assert_clean("");
}

/// (rank, node) from Intel MPI's `I_MPI_DEBUG` pinning report:
/// `[0] MPI startup(): 1       8061     imb-worker-1  {0-1}`.
fn imb_placement(out: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("[0] MPI startup():"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[3].starts_with('{'))
                .then(|| w[0].parse().ok().map(|r| (r, w[2].to_string())))
                .flatten()
        })
        .collect();
    v.sort();
    v
}

/// A Kubeflow MPIJob (`kubeflow.org/v2beta1`) named `name`: `workers`
/// workers with `slots` slots each, `mpi` as its mpiImplementation, and
/// the launcher running `cmd`, its own command.
fn kubeflow_manifest(
    tmp: &TempDir,
    name: &str,
    mpi: &str,
    slots: u32,
    workers: u32,
    launcher_as_worker: bool,
    cmd: &[&str],
) -> PathBuf {
    let cmd = cmd
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata:\n  name: {name}\n  namespace: team\nspec:\n  \
         slotsPerWorker: {slots}\n  runLauncherAsWorker: {launcher_as_worker}\n  mpiImplementation: {mpi}\n  \
         runPolicy:\n    cleanPodPolicy: Running\n  mpiReplicaSpecs:\n    Launcher:\n      replicas: 1\n      \
         template:\n        spec:\n          containers:\n            - name: mpi-launcher\n              \
         image: mpijob/kubeflow-openmpi4:latest\n              command: [{cmd}]\n    Worker:\n      \
         replicas: {workers}\n      template:\n        spec:\n          containers:\n            \
         - name: mpi-worker\n              image: mpijob/kubeflow-openmpi4:latest\n"
    );
    let path = tmp.path(&format!("{name}.yaml"));
    fs::write(&path, text).unwrap();
    path
}

/// pi compiled with `mpicc` (a path or a name on PATH) and `env`.
fn compile_pi_with(tmp: &TempDir, mpicc: &str, env: &[(String, String)]) -> PathBuf {
    let out = tmp.path("pi");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pi/pi.c");
    hosts::run(
        Command::new(mpicc)
            .envs(env.iter().cloned())
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(src),
    );
    out
}

/// Run a Kubeflow manifest; it succeeds with `per_host[h]` ranks on host
/// `h` (by hostname) and none elsewhere, and leaves nothing behind.
fn kubeflow_runs(m: &Path, env: &[(String, String)], per_host: &[(&str, usize)]) -> String {
    let mut run = Local::start_env(m, &[], None, env);
    let (code, out, err) = run.finish();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let got = ranks(&out);
    let total: usize = per_host.iter().map(|(_, n)| n).sum();
    assert_eq!(got.len(), total, "{out}\n{err}");
    for (host, n) in per_host {
        let on = got.iter().filter(|(_, h)| h == host).count();
        assert_eq!(on, *n, "{on} ranks on {host}:\n{out}");
    }
    assert!(out.contains("pi is approximately 3.14159"), "{out}");
    run.assert_clean("");
    err
}

/// A Kubeflow manifest runs in local mode as its pods would: the
/// launcher's own `mpirun` with mpi-operator's variables, one rank on each
/// worker, none on the launcher.
#[test]
fn a_kubeflow_open_mpi_job_runs_its_launchers_command_across_the_workers() {
    require_local_tools();
    let tmp = TempDir::new("local-kf-ompi");
    let pi = compile_pi(&tmp);
    let pi = pi.to_str().unwrap();
    let cmd = ["mpirun", "--allow-run-as-root", "-n", "2", pi, "100000"];
    let m = kubeflow_manifest(&tmp, "kfpi", "OpenMPI", 1, 2, false, &cmd);
    let err = kubeflow_runs(&m, &[], &[("kfpi-worker-0", 1), ("kfpi-worker-1", 1)]);
    assert!(
        err.contains("starting mpirun --allow-run-as-root -n 2"),
        "the command runs as it is: {err}"
    );
    assert!(err.contains("job kfpi succeeded"), "{err}");
}

/// MPICH, 2 slots per worker: Hydra reads `host:2` from mpi-operator's
/// HYDRA_HOST_FILE, 2 ranks on each worker.
#[test]
fn a_kubeflow_mpich_job_gets_slots_per_worker() {
    require_local_tools();
    let tmp = TempDir::new("local-kf-mpich");
    let pi = compile_pi_with(&tmp, "mpicc.mpich", &[]);
    let cmd = ["mpirun.mpich", "-n", "4", pi.to_str().unwrap(), "100000"];
    let m = kubeflow_manifest(&tmp, "kfm", "MPICH", 2, 2, false, &cmd);
    kubeflow_runs(&m, &[], &[("kfm-worker-0", 2), ("kfm-worker-1", 2)]);
}

/// Intel MPI from PyPI, 2 slots per worker: mpi-operator's I_MPI_PERHOST
/// puts exactly 2 ranks on each worker.
#[test]
fn a_kubeflow_intel_mpi_job_gets_slots_per_worker() {
    require_local_tools();
    let tmp = TempDir::new("local-kf-intel");
    let venv = venv(VENV_INTEL);
    let env = venv_env(&venv);
    let mpicc = venv.join("bin/mpicc");
    let pi = compile_pi_with(&tmp, mpicc.to_str().unwrap(), &env);
    let cmd = ["mpirun", "-n", "4", pi.to_str().unwrap(), "100000"];
    let m = kubeflow_manifest(&tmp, "kfi", "Intel", 2, 2, false, &cmd);
    kubeflow_runs(&m, &env, &[("kfi-worker-0", 2), ("kfi-worker-1", 2)]);
}

/// runLauncherAsWorker: the launcher's host runs sshd too and is first in
/// the hostfile, so 3 ranks land one on the launcher and one on each
/// worker.
#[test]
fn a_kubeflow_launcher_as_worker_runs_a_rank_too() {
    require_local_tools();
    let tmp = TempDir::new("local-kf-law");
    let pi = compile_pi(&tmp);
    let cmd = [
        "mpirun",
        "--allow-run-as-root",
        "-n",
        "3",
        pi.to_str().unwrap(),
        "100000",
    ];
    let m = kubeflow_manifest(&tmp, "kfl", "OpenMPI", 1, 2, true, &cmd);
    let err = kubeflow_runs(
        &m,
        &[],
        &[
            ("kfl-launcher", 1),
            ("kfl-worker-0", 1),
            ("kfl-worker-1", 1),
        ],
    );
    assert!(err.contains("[3/3,"), "three sshds come up: {err}");
}

/// A rank that exits 3 gives 3, with the summary the job's status says.
#[test]
fn a_kubeflow_jobs_failing_rank_gives_its_exit_code() {
    require_local_tools();
    let tmp = TempDir::new("local-kf-fail");
    let home = hosts::mpi_home(&tmp, "openmpi");
    let hello = hosts::compile_hello(&tmp, &home, "hello");
    let cmd = [
        "mpirun",
        "--allow-run-as-root",
        "-n",
        "2",
        hello.to_str().unwrap(),
        "fail",
    ];
    let m = kubeflow_manifest(&tmp, "kff", "OpenMPI", 1, 2, false, &cmd);
    let mut run = Local::start(&m, &[], None);
    let (code, out, err) = run.finish();
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("job kff failed with exit code 3")
            && err.contains("rank 1 exited with code 3"),
        "{err}"
    );
    run.assert_clean("");
}

/// An older Kubeflow version gets the `convert` hint; an Intel job whose
/// mpirun is Open MPI's is named before anything starts.
#[test]
fn kubeflow_bad_input_is_named() {
    require_local_tools();
    let tmp = TempDir::new("local-kf-bad");
    let m = tmp.path("old.yaml");
    fs::write(
        &m,
        "apiVersion: kubeflow.org/v1alpha2\nkind: MPIJob\nmetadata: {name: old}\nspec: {}\n",
    )
    .unwrap();
    let mut run = Local::start(&m, &[], None);
    let (code, _, err) = run.finish();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("apiVersion \"kubeflow.org/v1alpha2\": local mode runs kubeflow.org/v2beta1 and batch.tensorstack.dev/v1beta1 MPIJobs; convert this one first: mpijob-controller convert -f"),
        "{err}"
    );

    let pi = compile_pi(&tmp);
    let cmd = ["mpirun", "-n", "2", pi.to_str().unwrap()];
    let m = kubeflow_manifest(&tmp, "kfx", "Intel", 1, 2, false, &cmd);
    let mut run = Local::start(&m, &[], None);
    let (code, _, err) = run.finish();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("spec.mpiImplementation: Intel, but the launcher's command runs /usr/bin/mpirun, which is Open MPI's mpirun (its --version says so); set mpiImplementation: OpenMPI, or run Intel MPI's mpirun"),
        "{err}"
    );
    run.assert_clean("");
}
