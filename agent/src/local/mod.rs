//! `mpijob-agent local -f MANIFEST`: run an MPIJob on this machine, with no
//! cluster.
//!
//! Every worker replica is a "host" and the launcher is one more:
//! - as root, a network namespace on a private bridge with its own
//!   198.18.0.0/15 address, hostname (UTS namespace) and resolv.conf (a
//!   private mount namespace), and a dnsmasq in a namespace of its own that
//!   serves the job's names as the cluster would
//!   (`<job>-worker-<i>.<job>.<ns>.svc`, with search domains);
//! - without root, a loopback address of its own (127.x.y.z) and, through a
//!   user namespace that maps only the caller's uid, its own hostname and
//!   an `/etc/hosts` that names every worker. The launcher's resolver reads
//!   `/etc/hosts` first, so its wait still resolves every name.
//!
//! A throwaway job key goes into a private temporary directory, a worker
//! agent runs in each worker host, and the launcher agent in its own host
//! runs the manifest's command across them. This process stays in front:
//! it passes SIGINT and SIGTERM to the launcher, waits for it, and removes
//! everything it made on every path (see [`Teardown`]).

mod enter;
pub mod net;
mod plan;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use mpijob_api::contract;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::errors::io_reason;
use crate::init::{self, Init};
use enter::Enter;
pub use plan::Plan;

/// Bad input (the manifest, the flags): exit 2, as the launcher does.
pub const BAD_INPUT: i32 = 2;
/// Local mode itself failed (a tool is missing, a host did not come up).
pub const FAILED: i32 = 1;
/// dnsmasq, from Debian's dnsmasq-base.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// The flags of `mpijob-agent local`.
#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    pub workers: Option<u32>,
    pub keep: bool,
    /// How long the launcher waits for the workers.
    pub timeout: Duration,
}

/// What to say, prefixed, on stderr.
fn say(line: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "local: {}", line.as_ref());
}

/// Run a manifest; returns the exit code (the job's, the launcher's).
pub fn run(opts: Options) -> Result<i32> {
    // First, so that no signal is lost and no orphan escapes.
    let mut init = Init::new()?;
    let text = match fs::read_to_string(&opts.manifest) {
        Ok(t) => t,
        Err(e) => {
            say(format!(
                "cannot read {}: {}; give the MPIJob manifest with -f FILE",
                opts.manifest.display(),
                io_reason(&e)
            ));
            return Ok(BAD_INPUT);
        }
    };
    let job = match mpijob_api::manifest::parse(&text) {
        Ok(job) => job,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            return Ok(BAD_INPUT);
        }
    };
    let root = nix::unistd::geteuid().is_root();
    let plan = match Plan::new(&job, opts.workers, root) {
        Ok(p) => p,
        Err(line) => {
            say(line);
            return Ok(BAD_INPUT);
        }
    };
    if let Err(line) = plan.check_tools() {
        say(line);
        return Ok(FAILED);
    }
    say(format!(
        "running MPIJob {}/{} on this machine with {} worker{}: {} runs from this machine's files; the container image{} is not used",
        plan.namespace,
        plan.job,
        plan.workers,
        if plan.workers == 1 { "" } else { "s" },
        plan.cmd.join(" "),
        plan.image.as_deref().map(|i| format!(" ({i})")).unwrap_or_default(),
    ));
    let mut t = Teardown::new(&plan, opts.keep);
    let code = match local(&mut init, &plan, &opts, &mut t) {
        Ok(code) => code,
        Err(Stop::Signal(sig)) => {
            say(format!("received {sig} while setting up: cleaning up"));
            128 + sig as i32
        }
        Err(Stop::Failed(line)) => {
            say(line);
            FAILED
        }
    };
    let started = Instant::now();
    t.run(&mut init);
    tracing::debug!(
        "timing: tear-down {} us for {} workers",
        started.elapsed().as_micros(),
        plan.workers
    );
    Ok(code)
}

/// Why the run ended early.
enum Stop {
    Signal(Signal),
    Failed(String),
}

/// A terminating signal received since the last look.
fn stop_signal(init: &mut Init) -> Option<Signal> {
    init.wait(None, Duration::ZERO)
        .signals
        .into_iter()
        .find(|s| matches!(s, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP))
}

fn failed(what: impl std::fmt::Display) -> Stop {
    Stop::Failed(what.to_string())
}

/// The hosts' events, from the threads that read the workers' logs.
enum Event {
    /// Worker `i`'s sshd accepts connections, since this instant.
    Ready(usize, Instant),
}

fn local(init: &mut Init, plan: &Plan, opts: &Options, t: &mut Teardown) -> Result<i32, Stop> {
    let setup_started = Instant::now();
    // 1. The private directory: key, state, logs, DNS files.
    let dir = &t.dir;
    make_private_dir(dir).map_err(|e| {
        failed(format!(
            "cannot create {}: {}; set TMPDIR to a writable directory",
            dir.display(),
            io_reason(&e)
        ))
    })?;
    t.dir_made = true;
    let ssh = dir.join("ssh");
    let logs = dir.join("logs");
    let etc = dir.join("etc");
    for d in [&ssh, &logs, &etc] {
        make_private_dir(d).map_err(|e| failed(format!("{}: {e}", d.display())))?;
    }
    let key =
        mpijob_api::sshkey::generate(&format!("mpijob-local:{}/{}", plan.namespace, plan.job));
    write_mode(
        &ssh.join("id_ed25519"),
        key.private_openssh.as_bytes(),
        0o600,
    )
    .map_err(failed)?;
    write_mode(
        &ssh.join("id_ed25519.pub"),
        format!("{}\n", key.public_openssh).as_bytes(),
        0o644,
    )
    .map_err(failed)?;
    drop(key);
    for (i, host) in plan.hosts.iter().enumerate() {
        write_mode(
            &etc.join(format!("hosts-{i}")),
            plan.hosts_file(host).as_bytes(),
            0o644,
        )
        .map_err(failed)?;
    }
    write_mode(
        &etc.join("resolv.conf"),
        plan.resolv_conf().as_bytes(),
        0o644,
    )
    .map_err(failed)?;
    write_mode(&etc.join("dns-hosts"), plan.dns_hosts().as_bytes(), 0o644).map_err(failed)?;
    if let Some(sig) = stop_signal(init) {
        return Err(Stop::Signal(sig));
    }

    // 2. The network: namespaces, veth pairs and the bridge, as root.
    if !plan.root {
        say(format!(
            "run {}: not root, so {} hosts on loopback addresses {} (port {}), each with its own hostname and /etc/hosts in a user namespace",
            plan.id,
            plan.hosts.len(),
            plan.address_range(),
            plan.port
        ));
    }
    if plan.root {
        say(format!(
            "run {}: creating {} hosts: network namespaces {}-*, bridge {}, addresses {}, DNS at {}",
            plan.id,
            plan.hosts.len(),
            plan.netns_prefix(),
            plan.bridge,
            plan.address_range(),
            plan.hosts[plan.dns_index()].addr
        ));
        let links = plan.links();
        // Recorded first, so that the teardown removes whatever was made.
        t.netns = links.iter().map(|l| l.netns.clone()).collect();
        t.bridge = Some(plan.bridge.clone());
        net::ip_batch(None, &net::outside_commands(&plan.bridge, true, &links)).map_err(failed)?;
        let inside: Vec<_> = links
            .iter()
            .map(|l| {
                let l = l.clone();
                std::thread::spawn(move || net::ip_batch(Some(&l.netns), &net::inside_commands(&l)))
            })
            .collect();
        for h in inside {
            h.join()
                .unwrap_or_else(|_| Err("ip failed".into()))
                .map_err(failed)?;
        }
        t.netns_ids = t
            .netns
            .iter()
            .filter_map(|n| net::netns_identity(n))
            .collect();
        if let Some(sig) = stop_signal(init) {
            return Err(Stop::Signal(sig));
        }
        // 3. DNS.
        let dns = &plan.hosts[plan.dns_index()];
        let mut cmd = init::child_command(DNSMASQ);
        cmd.args(plan.dnsmasq_args(&etc.join("dns-hosts")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&logs, &dns.hostname).map_err(failed)?);
        host_enter(plan, dns, None).map_err(failed)?.apply(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot start {DNSMASQ}: {}", io_reason(&e))))?;
        t.children.push((child.id() as i32, dns.hostname.clone()));
        t.dns = Some(child.id() as i32);
    }

    // 4. The workers.
    let agent =
        std::env::current_exe().map_err(|e| failed(format!("cannot find this program: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let mut workers: Vec<i32> = Vec::new();
    for (w, host) in plan
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.worker.is_some())
    {
        let i = host.worker.unwrap();
        let state = dir.join(&host.hostname);
        let finish = dir.join(format!("{}.finished", host.hostname));
        let mut cmd = init::child_command(&agent);
        cmd.args(plan.worker_args(host, &ssh, &state, &finish).to_argv())
            .env_remove(contract::env::PEERS)
            .env_remove(contract::env::LOG_FORMAT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches this
            // process, which stops the job in order.
            .process_group(0);
        host_enter(plan, host, Some(&etc.join(format!("hosts-{w}"))))
            .map_err(failed)?
            .apply(&mut cmd);
        let mut child: Child = cmd.spawn().map_err(|e| {
            failed(format!(
                "cannot start the worker agent {}: {}",
                agent.display(),
                io_reason(&e)
            ))
        })?;
        let pid = child.id() as i32;
        t.children.push((pid, host.hostname.clone()));
        workers.push(pid);
        let log = log_file(&logs, &host.hostname).map_err(failed)?;
        let stderr = child.stderr.take().expect("piped");
        let tx = tx.clone();
        std::thread::spawn(move || follow(stderr, log, i as usize, tx));
    }
    drop(tx);

    // 5. The launcher, at once: its own wait for DNS and the ssh banners is
    // the one the cluster runs.
    let launcher_host = &plan.hosts[plan.launcher_index()];
    let termination_log = dir.join("termination-log");
    let mut cmd = init::child_command(&agent);
    cmd.args(
        plan.launcher_args(&ssh, &dir.join("launcher"), &termination_log, opts.timeout)
            .to_argv(),
    )
    .env_remove(contract::env::LOG_FORMAT)
    .env_remove(contract::env::HOSTS)
    .stdin(Stdio::null())
    .process_group(0);
    if let Some(pid) = t.dns {
        // dnsmasq writes its pid file once it listens. A query sent before
        // that would cost the resolver a whole timeout (1 s).
        let pid_file = dir.join("dnsmasq.pid");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
            if let Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) =
                waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            {
                t.forget(pid);
                let log = fs::read_to_string(logs.join("mpijob-dns.log")).unwrap_or_default();
                return Err(failed(format!(
                    "dnsmasq exited ({}): {}",
                    describe(status),
                    log.trim().replace('\n', "; ")
                )));
            }
            if Instant::now() >= deadline {
                return Err(failed("dnsmasq did not start within 5s"));
            }
            if let Some(sig) = stop_signal(init) {
                return Err(Stop::Signal(sig));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let launcher_hosts = etc.join(format!("hosts-{}", plan.launcher_index()));
    host_enter(plan, launcher_host, Some(&launcher_hosts))
        .map_err(failed)?
        .apply(&mut cmd);
    if let Some(sig) = stop_signal(init) {
        return Err(Stop::Signal(sig));
    }
    let launcher = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start the launcher agent: {e}")))?;
    let launcher = Pid::from_raw(launcher.id() as i32);
    t.children
        .push((launcher.as_raw(), launcher_host.hostname.clone()));

    // 6. Stay in front until the launcher exits.
    let mut up = 0;
    let mut stop: Option<Signal> = None;
    let mut worker_failed: Option<String> = None;
    loop {
        let events = init.wait(None, Duration::from_millis(50));
        for sig in events.signals {
            if matches!(sig, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP) {
                if stop.is_none() {
                    say(format!("received {sig}: stopping the job"));
                }
                stop.get_or_insert(sig);
            }
            let _ = kill(launcher, sig);
        }
        while let Ok(Event::Ready(i, at)) = rx.try_recv() {
            up += 1;
            let host = plan.worker(i);
            say(format!(
                "{} is up ({}, sshd on port {}) [{up}/{}, {:.0?}]",
                host.hostname,
                host.addr,
                plan.port,
                plan.workers,
                at - setup_started
            ));
            if up == plan.workers {
                tracing::debug!(
                    "timing: set-up {} us for {} workers",
                    (at - setup_started).as_micros(),
                    plan.workers
                );
            }
        }
        let mut launcher_status = None;
        for (pid, status) in reap_all() {
            if pid == launcher {
                launcher_status = Some(status);
            } else if workers.contains(&pid.as_raw()) && worker_failed.is_none() {
                let name = t.name_of(pid.as_raw());
                let log = logs.join(format!("{name}.log"));
                let tail = fs::read_to_string(&log)
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                let line = format!(
                    "the worker agent of {name} exited ({}) before the job ended: {tail}",
                    describe(status)
                );
                say(&line);
                worker_failed = Some(line);
                let _ = kill(launcher, Signal::SIGTERM);
            }
        }
        if let Some(status) = launcher_status {
            t.forget(launcher.as_raw());
            let code = match status {
                WaitStatus::Exited(_, c) => c,
                WaitStatus::Signaled(_, s, _) => 128 + s as i32,
                _ => FAILED,
            };
            let summary = fs::read_to_string(&termination_log).unwrap_or_default();
            let summary = summary.trim().trim_start_matches("launcher: ");
            if let Some(line) = worker_failed {
                return Err(Stop::Failed(format!("job {} failed: {line}", plan.job)));
            }
            match (code, stop) {
                (0, _) => say(format!(
                    "job {} succeeded in {:.1?}",
                    plan.job,
                    setup_started.elapsed()
                )),
                (_, Some(sig)) => say(format!(
                    "job {} stopped by {sig}; exit code {code}",
                    plan.job
                )),
                _ => say(format!(
                    "job {} failed with exit code {code}: `{}` ({})",
                    plan.job,
                    plan.cmd.join(" "),
                    if summary.is_empty() {
                        "the launcher left no summary"
                    } else {
                        summary
                    }
                )),
            }
            return Ok(code);
        }
    }
}

/// Every child that has exited, reaped (this process's one `waitpid` loop
/// while the job runs).
fn reap_all() -> Vec<(Pid, WaitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return out,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    out.push((pid, status));
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return out,
        }
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, c) => format!("exit code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("killed by {s}"),
        other => format!("{other:?}"),
    }
}

/// How a process enters `host`. `hosts_file` is bound over `/etc/hosts`.
fn host_enter(plan: &Plan, host: &plan::Host, hosts_file: Option<&Path>) -> Result<Enter, String> {
    let mut e = Enter::default();
    if plan.root {
        let ns = host.netns.as_deref().expect("a namespace as root");
        e.netns = Some(
            enter::open_netns(ns)
                .map_err(|err| format!("cannot open network namespace {ns}: {err}"))?,
        );
        let etc = plan.dir.join("etc");
        e.binds
            .push((etc.join("resolv.conf"), "/etc/resolv.conf".into()));
    } else {
        let me = crate::user::User::current();
        e.user_ns = Some((me.uid, me.gid));
    }
    if let Some(f) = hosts_file {
        e.binds.push((f.to_path_buf(), "/etc/hosts".into()));
    }
    if host.worker.is_some() || host.launcher {
        e.hostname = Some(host.hostname.clone());
    }
    Ok(e)
}

/// Copy a worker agent's log to its file, and say when sshd is ready.
fn follow(stderr: impl std::io::Read, mut log: fs::File, i: usize, tx: mpsc::Sender<Event>) {
    let mut ready = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if !ready && line.contains("ready: sshd accepts connections") {
            ready = true;
            let _ = tx.send(Event::Ready(i, Instant::now()));
        }
    }
}

fn log_file(logs: &Path, name: &str) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(logs.join(format!("{name}.log")))
        .map_err(|e| format!("cannot write {}/{name}.log: {e}", logs.display()))
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        f.write_all(contents)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    };
    write().map_err(|e| format!("cannot write {}: {}", path.display(), io_reason(&e)))
}

/// Everything a run made, removed on every path unless `--keep`.
pub struct Teardown {
    keep: bool,
    dir: PathBuf,
    dir_made: bool,
    netns: Vec<String>,
    netns_ids: Vec<(u64, u64)>,
    bridge: Option<String>,
    /// dnsmasq's pid, as root.
    dns: Option<i32>,
    /// Children still to stop: (pid, host name).
    children: Vec<(i32, String)>,
}

impl Teardown {
    fn new(plan: &Plan, keep: bool) -> Teardown {
        Teardown {
            keep,
            dir: plan.dir.clone(),
            dir_made: false,
            netns: Vec::new(),
            netns_ids: Vec::new(),
            bridge: None,
            dns: None,
            children: Vec::new(),
        }
    }

    fn name_of(&self, pid: i32) -> String {
        self.children
            .iter()
            .find(|(p, _)| *p == pid)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| pid.to_string())
    }

    fn forget(&mut self, pid: i32) {
        self.children.retain(|(p, _)| *p != pid);
    }

    /// Stop every process (SIGTERM, then SIGKILL after a second), remove
    /// the namespaces and the bridge, then the directory.
    fn run(&mut self, init: &mut Init) {
        for (pid, _) in &self.children {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.children.is_empty() && Instant::now() < deadline {
            for (pid, _) in reap_all() {
                self.forget(pid.as_raw());
            }
            if self.children.is_empty() {
                break;
            }
            init.wait(None, Duration::from_millis(5));
        }
        // Whatever is left in the namespaces (ranks, sessions), and every
        // child or adopted orphan of this process.
        net::kill_all_in(&self.netns_ids, Duration::from_secs(2), || {
            let _ = reap_all();
        });
        init.stop_remaining(Duration::from_millis(500));
        let mut kept = Vec::new();
        if self.keep {
            if !self.netns.is_empty() {
                kept.push(format!(
                    "network namespaces {} and bridge {} (remove: {})",
                    self.netns.join(" "),
                    self.bridge.as_deref().unwrap_or("-"),
                    self.remove_command()
                ));
            }
            if self.dir_made {
                kept.push(format!(
                    "{} (key, logs, hostfile; remove: rm -rf {})",
                    self.dir.display(),
                    self.dir.display()
                ));
            }
            for k in kept {
                say(format!("--keep: kept {k}"));
            }
            return;
        }
        if !self.netns.is_empty() || self.bridge.is_some() {
            if let Err(e) = net::ip_batch(
                None,
                &net::delete_commands(self.bridge.as_deref(), &self.netns),
            ) {
                // Namespaces or a bridge that never got made fail here too;
                // say so only for what is really left.
                let left: Vec<&String> = self
                    .netns
                    .iter()
                    .filter(|n| Path::new(net::NETNS_DIR).join(n).exists())
                    .collect();
                if !left.is_empty() {
                    say(format!("cannot remove {left:?}: {e}"));
                }
            }
        }
        if self.dir_made {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                say(format!("cannot remove {}: {e}", self.dir.display()));
            }
        }
    }

    fn remove_command(&self) -> String {
        let mut s: Vec<String> = self
            .netns
            .iter()
            .map(|n| format!("ip netns del {n}"))
            .collect();
        if let Some(b) = &self.bridge {
            s.push(format!("ip link del {b}"));
        }
        s.join("; ")
    }
}

/// The address after `base` by `n`.
pub fn offset(base: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + n)
}
