//! The worker's OOM watch against the real kernel: the agent runs in a
//! memory cgroup of its own with a 64 MiB limit, a command started over
//! ssh outgrows it, the kernel OOM-kills that command, and the agent must
//! stop sshd and exit 137 with one line that says so, as a container whose
//! rank was OOM-killed should.
//!
//! The cgroup is a child of the test's own memory cgroup (cgroup v1), or a
//! sibling of it (cgroup v2, where a cgroup with processes cannot have
//! children with controllers). It is removed by a Drop guard, after every
//! process left in it is killed, also when a test fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LIMIT: u64 = 64 << 20;

/// A memory cgroup made for one test.
struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    fn new(tag: &str, limit: u64) -> MemCgroup {
        let cgroups = fs::read_to_string("/proc/self/cgroup").unwrap();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = |fstype: &str, option: Option<&str>| {
            mounts.lines().find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let dash = f.iter().position(|&x| x == "-")?;
                let fits = f.get(dash + 1) == Some(&fstype)
                    && match option {
                        None => true,
                        Some(o) => f
                            .get(dash + 3)
                            .is_some_and(|opts| opts.split(',').any(|x| x == o)),
                    };
                fits.then(|| (f[3].to_string(), PathBuf::from(f[4])))
            })
        };
        let own = |pred: &dyn Fn(&str, &str) -> bool| {
            cgroups.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
                pred(id, controllers).then(|| path.to_string())
            })
        };
        let name = format!("mpijob-oom-test-{}-{tag}", std::process::id());
        let v1 = own(&|_, c| c.split(',').any(|c| c == "memory"));
        let (dir, v2) =
            if let (Some(path), Some((root, at))) = (v1, mount("cgroup", Some("memory"))) {
                let rel = Path::new(&path).strip_prefix(&root).unwrap_or_else(|_| {
                    panic!("memory cgroup {path} lies outside the mounted {root}")
                });
                (at.join(rel).join(name), false)
            } else {
                let path = own(&|id, c| id == "0" && c.is_empty()).expect(
                    "no memory cgroup: these tests need cgroup v1's memory controller or cgroup v2",
                );
                let (root, at) = mount("cgroup2", None).expect("cgroup2 is not mounted");
                let own = at.join(Path::new(&path).strip_prefix(&root).unwrap());
                // A cgroup with processes has no children with controllers: use
                // a sibling, which the parent's subtree_control gives memory.
                assert!(
                    own != at,
                    "the test runs in the root of the cgroup v2 mount {}: run it in a child \
                 cgroup (e.g. systemd-run --scope) so that a sibling can be made",
                    at.display()
                );
                let parent = own.parent().unwrap();
                let control = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
                assert!(
                    control.split_whitespace().any(|c| c == "memory"),
                    "{}/cgroup.subtree_control lacks memory",
                    parent.display()
                );
                (parent.join(name), true)
            };
        fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the memory cgroup {}: {e}; these tests need a writable \
                 cgroup file system, as root",
                dir.display()
            )
        });
        let cgroup = MemCgroup { dir, v2 };
        if v2 {
            cgroup.write("memory.max", &limit.to_string());
            if cgroup.dir.join("memory.swap.max").exists() {
                cgroup.write("memory.swap.max", "0");
            }
        } else {
            cgroup.write("memory.limit_in_bytes", &limit.to_string());
            // No swap may soften the limit: memory plus swap gets it too.
            if cgroup.dir.join("memory.memsw.limit_in_bytes").exists() {
                cgroup.write("memory.memsw.limit_in_bytes", &limit.to_string());
            }
            let _ = fs::write(cgroup.dir.join("memory.swappiness"), "0");
        }
        cgroup
    }

    fn write(&self, file: &str, value: &str) {
        fs::write(self.dir.join(file), value)
            .unwrap_or_else(|e| panic!("{}/{file}: {e}", self.dir.display()));
    }

    fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    fn procs(&self) -> Vec<i32> {
        fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    fn oom_kills(&self) -> u64 {
        oom_kills(&self.dir, self.v2)
    }

    /// Run `sh -c script` directly in this cgroup, not through the agent.
    fn run(&self, script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo 0 > {} && {script}",
                self.procs_file().display()
            ))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }
}

/// The `oom_kill` counter of the cgroup at `dir`.
fn oom_kills(dir: &Path, v2: bool) -> u64 {
    let file = if v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    let text = fs::read_to_string(dir.join(file)).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no oom_kill counter in {file} (Linux >= 4.13 needed)"))
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // Everything here was started by this test.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.procs().is_empty() && Instant::now() < deadline {
            for pid in self.procs() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        while fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.dir.exists() {
            eprintln!("could not remove the cgroup {}", self.dir.display());
        }
    }
}

/// An agent in `cgroup`, ready, with its ssh command line.
fn agent_in(
    cgroup: &MemCgroup,
    tmp: &TempDir,
    termination_log: Option<PathBuf>,
    env: &[(&str, &str)],
) -> (Agent, Vec<String>) {
    let secret = secret_dir(tmp, "secret", None);
    let port = free_port();
    let launch = Launch {
        cgroup_procs: Some(cgroup.procs_file()),
        termination_log,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let port_s = port.to_string();
    let a = ["--port", &port_s, "--listen", "127.0.0.1"];
    let mut agent = Agent::start(&launch, &tmp.path("state"), &secret, &a);
    agent.wait_ready();
    assert!(
        cgroup.procs().contains(&agent.pid()),
        "the agent is not in {}",
        cgroup.dir.display()
    );
    let ssh = ssh_with_key(&agent.state.join("job_key"), port, "127.0.0.1");
    (agent, ssh)
}

fn ssh(cmd: &[String], script: &str) -> std::process::Output {
    std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .arg(script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Far more than the 64 MiB limit: `tail` keeps the one endless line.
const HOG: &str = "head -c 300M /dev/zero | tail > /dev/null";

const OOM_LINE: &str = "the kernel's OOM killer killed a process in this worker's memory cgroup";

#[test]
fn an_oom_kill_in_its_cgroup_stops_the_worker_with_137() {
    require_tools();
    let cgroup = MemCgroup::new("kill", LIMIT);
    let other = MemCgroup::new("other", LIMIT);
    let tmp = TempDir::new("oom");
    let termination_log = tmp.path("termination-log");
    fs::write(&termination_log, "").unwrap();
    let (mut agent, ssh_cmd) = agent_in(&cgroup, &tmp, Some(termination_log.clone()), &[]);
    let log = agent.log();
    assert!(
        log.contains(&format!(
            "({}), memory limit 64 MiB, oom_kill 0",
            cgroup.dir.display()
        )),
        "{log}"
    );
    let sshd = agent.sshd_pid();

    // Memory well under the limit changes nothing.
    let out = ssh(&ssh_cmd, "head -c 8M /dev/zero | tail | wc -c");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "8388608\n", "{out:?}");
    // Nor does an OOM kill in another cgroup.
    let out = other.run(HOG);
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(other.oom_kills(), 1);
    let exit = common::exit_within(&mut agent.child, Duration::from_millis(500));
    assert_eq!(exit, None, "{}", agent.log());
    assert!(!agent.log().contains(OOM_LINE));
    assert_eq!(cgroup.oom_kills(), 0);

    // When the counter goes up, measured at 1 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let dir = cgroup.dir.clone();
        let v2 = cgroup.v2;
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if oom_kills(&dir, v2) > 0 {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        })
    };
    let out = ssh(&ssh_cmd, HOG);
    let ssh_done = Instant::now();
    // The shell reports its killed `tail` (137), unless the agent closed
    // the connection first (255).
    assert!(
        matches!(out.status.code(), Some(137) | Some(255)),
        "{out:?}\n{}",
        agent.log()
    );
    let mut line_at = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if line_at.is_none() && agent.log().contains(OOM_LINE) {
            line_at = Some(Instant::now());
        }
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent still runs 5 s after the OOM kill:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let exited_at = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let oom_at = watcher.join().unwrap().expect("the OOM killer never fired");
    std::thread::sleep(Duration::from_millis(50));
    let log = agent.log();
    let line_at = line_at.unwrap_or(exited_at);
    eprintln!(
        "OOM kill -> agent's line: {} ms, -> agent's exit: {} ms (-> ssh's return: {} ms)",
        line_at.duration_since(oom_at).as_millis(),
        exited_at.duration_since(oom_at).as_millis(),
        ssh_done.saturating_duration_since(oom_at).as_millis()
    );
    assert_eq!(status.code(), Some(137), "{log}");
    assert_eq!(cgroup.oom_kills(), 1);

    // One line, with the cgroup, the limit and the counter.
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(OOM_LINE)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains(&cgroup.dir.display().to_string()), "{line}");
    assert!(
        line.ends_with(", memory limit 64 MiB, oom_kill 0 -> 1: stopping sshd, exit code 137"),
        "{line}"
    );
    let summary = fs::read_to_string(&termination_log).unwrap();
    assert!(
        summary.starts_with(&format!("worker: {OOM_LINE}")),
        "{summary}"
    );
    assert!(
        summary.ends_with(", memory limit 64 MiB, oom_kill 0 -> 1; exit code 137\n"),
        "{summary}"
    );

    // Nothing is left: no sshd, no session, nothing in the cgroup.
    assert!(
        !Path::new(&format!("/proc/{sshd}")).exists(),
        "sshd {sshd} survived"
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while !cgroup.procs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cgroup.procs(), Vec::<i32>::new(), "{log}");
}

#[test]
fn with_the_watch_off_an_oom_kill_leaves_the_worker_running() {
    require_tools();
    let cgroup = MemCgroup::new("off", LIMIT);
    let tmp = TempDir::new("oom-off");
    let (mut agent, ssh_cmd) = agent_in(&cgroup, &tmp, None, &[("MPIJOB_NO_OOM_WATCH", "true")]);
    assert!(
        agent.log().contains("oom_watch=off: --no-oom-watch"),
        "{}",
        agent.log()
    );
    let out = ssh(&ssh_cmd, HOG);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert_eq!(cgroup.oom_kills(), 1);
    let exit = common::exit_within(&mut agent.child, Duration::from_millis(600));
    assert_eq!(exit, None, "{}", agent.log());
    let out = ssh(&ssh_cmd, "echo still here");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "still here\n",
        "{out:?}"
    );
    assert!(!agent.log().contains(OOM_LINE), "{}", agent.log());
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait_exit(Duration::from_secs(5)).code(), Some(143));
}

/// `mpijob-agent guard -- sh -c SCRIPT` in `cgroup`: its exit status and
/// its log (stderr, the command's output included).
fn guard_in(cgroup: &MemCgroup, script: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} && exec {AGENT} guard -- sh -c \"$0\"",
            cgroup.procs_file().display()
        ))
        .arg(script)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status, log)
}

/// The guard of a Kubeflow worker: a child of the guarded command (as a
/// rank is a child of sshd) is OOM-killed while the command itself lives
/// on, and the guard stops the command and exits 137. Without an OOM kill
/// the command's own exit code is the guard's.
#[test]
fn the_guard_turns_an_oom_kill_of_a_grandchild_into_137() {
    require_tools();
    let cgroup = MemCgroup::new("guard", LIMIT);
    let started = Instant::now();
    // The shell survives the kill of its pipeline and would sleep on.
    let (status, log) = guard_in(&cgroup, &format!("{HOG}; echo pipeline-ended; sleep 600"));
    assert_eq!(status.code(), Some(137), "{log}");
    // Not a speed limit: the command's own sleep would have lasted 600 s.
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the guard waited for the command's sleep: {log}"
    );
    assert_eq!(cgroup.oom_kills(), 1);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(OOM_LINE)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].ends_with(", memory limit 64 MiB, oom_kill 0 -> 1: stopping sh, exit code 137"),
        "{log}"
    );
    assert!(
        log.contains("pipeline-ended"),
        "the command's output is its own: {log}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cgroup.procs().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(cgroup.procs(), Vec::<i32>::new(), "{log}");

    let (status, log) = guard_in(&cgroup, "echo fine; exit 3");
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("fine"), "{log}");
    assert!(!log.contains(OOM_LINE), "{log}");
}

/// The guard passes SIGTERM on and keeps the command's own code: sshd's 0
/// on SIGTERM stays 0, as it would without the guard.
#[test]
fn the_guard_passes_sigterm_on_and_keeps_the_commands_code() {
    require_tools();
    let mut child = std::process::Command::new(AGENT)
        .args(["guard", "--no-oom-watch", "--", "sh", "-c"])
        .arg("trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_child(&mut child, Duration::from_secs(5), String::new);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("got-term"), "{rest}");
    assert_eq!(status.code(), Some(0));
}
