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
mod leftovers;
pub mod net;
mod plan;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use mpijob_api::contract;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::errors::{io_reason, Exit, BAD_INPUT, FAILED};
use crate::files;
use crate::init::{self, Init};
use crate::supervise::{
    self, Action, AfterStop, Ended, Ending, Event, Look, Policy, Supervisor, Watcher,
};
use enter::Enter;
pub use plan::{Plan, Source};
use plan::{DNSMASQ, YIELD_WHEN_IDLE};

/// The flags of `mpijob-agent local`.
#[derive(Debug, Clone)]
pub struct Options {
    pub manifest: PathBuf,
    pub workers: Option<u32>,
    pub keep: bool,
    /// How long the launcher waits for the workers.
    pub timeout: Duration,
}

/// `mpijob-agent local --clean`: remove what earlier runs left (the hosts
/// of `--keep` runs and of runs killed outright), leave runs that are
/// going, and say what was done. The exit code is 1 when something could
/// not be removed.
pub fn clean() -> Result<i32> {
    let mut init = Init::new()?;
    let done = remove_leftovers(&mut init, true);
    if done.removed == 0 && done.failed == 0 && done.left_alone == 0 {
        say("nothing to clean: no earlier run left anything here");
    }
    Ok(if done.failed == 0 { 0 } else { FAILED })
}

/// What [`remove_leftovers`] did, in runs.
struct Cleaned {
    removed: usize,
    failed: usize,
    /// Namespaces with no directory here, perhaps another TMPDIR's run.
    left_alone: usize,
}

/// Remove the leftovers of dead runs, and of kept ones with `kept`; say
/// each.
fn remove_leftovers(init: &mut Init, kept: bool) -> Cleaned {
    let mut done = Cleaned {
        removed: 0,
        failed: 0,
        left_alone: 0,
    };
    let root = nix::unistd::geteuid().is_root();
    // One cleaner at a time: two runs starting together would otherwise
    // both remove the same dead run, and one of them would fail.
    let _lock = match leftovers::lock(&std::env::temp_dir()) {
        Ok(lock) => lock,
        Err(e) => {
            say(format!("not removing what earlier runs left: {e}"));
            return done;
        }
    };
    for run in leftovers::find(&std::env::temp_dir()) {
        // Without root, a run's hosts are not ours to remove: a run
        // leaves them alone, --clean says so.
        if !root && !kept && !leftovers::ours(&run) {
            continue;
        }
        let state = leftovers::state_of(&run);
        let why = match state {
            leftovers::State::Alive => continue,
            leftovers::State::Unknown => {
                done.left_alone += 1;
                if kept {
                    say(format!(
                        "left alone: {} of run {}, which has no directory in {} (a run with another TMPDIR may be using them); if none is, remove them with: {}",
                        leftovers::describe(&run),
                        run.id,
                        std::env::temp_dir().display(),
                        net::delete_command_line(run.bridge.as_deref(), &run.netns)
                    ));
                }
                continue;
            }
            leftovers::State::Kept if !kept => continue,
            leftovers::State::Kept => "kept with --keep",
            leftovers::State::Dead => "its mpijob-agent local is gone",
        };
        let what = leftovers::describe(&run);
        match leftovers::remove(init, &run) {
            Ok(()) => {
                done.removed += 1;
                say(format!("removed what run {} left ({why}): {what}", run.id));
            }
            Err(e) => {
                done.failed += 1;
                say(format!(
                    "cannot remove what run {} left ({what}): {e}; run `mpijob-agent local --clean` as root",
                    run.id
                ));
            }
        }
    }
    done
}

/// What to say, prefixed, on stderr.
fn say(line: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "local: {}", line.as_ref());
}

/// Run a manifest; returns the exit code (the job's, the launcher's).
pub fn run(opts: Options) -> Result<i32> {
    // First, so that no signal is lost and no orphan escapes.
    let mut init = Init::new()?;
    // What runs killed outright left; a run that is going is left alone.
    remove_leftovers(&mut init, false);
    let plan = match load(&opts) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
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
        Err(exit) => {
            say(&exit.line);
            exit.code
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

/// The manifest, checked as the controller does, and the run's plan; or,
/// once it has said why, the exit code.
fn load(opts: &Options) -> Result<Plan, i32> {
    let text = fs::read_to_string(&opts.manifest).map_err(|e| {
        say(format!(
            "cannot read {}: {}; give the MPIJob manifest with -f FILE",
            opts.manifest.display(),
            io_reason(&e)
        ));
        BAD_INPUT
    })?;
    let print = |errors: mpijob_api::FieldErrors| {
        for e in &errors.0 {
            eprintln!("{e}");
        }
        BAD_INPUT
    };
    let source = match mpijob_api::manifest::api_version_of(&text).as_deref() {
        Some(mpijob_api::kubeflow::API_VERSION) => {
            let (job, resolved) = mpijob_api::kubeflow::parse(&text).map_err(print)?;
            Source::kubeflow(&job, &resolved).map_err(|line| {
                eprintln!("{line}");
                BAD_INPUT
            })?
        }
        Some(v) if v.starts_with("kubeflow.org/") => {
            say(format!(
                "apiVersion {v:?}: local mode runs kubeflow.org/v2beta1 and batch.tensorstack.dev/v1beta1 MPIJobs; convert this one first: mpijob-controller convert -f {} > job-v2beta1.yaml",
                opts.manifest.display()
            ));
            return Err(BAD_INPUT);
        }
        _ => {
            for warning in mpijob_api::manifest::warnings(&text) {
                say(format!("warning: {warning}"));
            }
            Source::t9k(&mpijob_api::manifest::parse(&text).map_err(print)?)
        }
    };
    let root = nix::unistd::geteuid().is_root();
    let plan = Plan::new(&source, opts.workers, root).map_err(|line| {
        say(line);
        BAD_INPUT
    })?;
    plan.check_tools().map_err(|line| {
        say(line);
        FAILED
    })?;
    Ok(plan)
}

/// Ends the set-up when a terminating signal has come since the last look.
fn check_stop(init: &mut Init) -> Result<(), Exit> {
    let stop = init
        .wait(None, Duration::ZERO)
        .signals
        .into_iter()
        .find(|s| STOP_SIGNALS.contains(s));
    match stop {
        Some(sig) => Err(Exit::signal(
            sig,
            format!("received {sig} while setting up: cleaning up"),
        )),
        None => Ok(()),
    }
}

/// The signals that stop a run; every signal goes on to the launcher.
const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

fn failed(what: impl std::fmt::Display) -> Exit {
    Exit::failed(what.to_string())
}

/// A worker's sshd accepts connections, since this instant (from the
/// threads that read the workers' logs).
struct Ready(usize, Instant);

/// The run's private directory and its parts.
struct Dirs {
    dir: PathBuf,
    /// The job key.
    ssh: PathBuf,
    logs: PathBuf,
    /// The hosts' /etc files and dnsmasq's hosts.
    etc: PathBuf,
}

fn local(init: &mut Init, plan: &Plan, opts: &Options, t: &mut Teardown) -> Result<i32, Exit> {
    let started = Instant::now();
    let dirs = make_dirs(plan, t)?;
    write_files(plan, &dirs)?;
    check_stop(init)?;
    timing("files", started);
    if plan.root {
        make_network(init, plan, t)?;
        timing("network", started);
        check_stop(init)?;
        start_dns(plan, &dirs, t)?;
    } else {
        say(format!(
            "run {}: not root, so {} hosts on loopback addresses {} (port {}), each with its own hostname and /etc/hosts in a user namespace",
            plan.id,
            plan.hosts.len(),
            plan.address_range(),
            plan.port
        ));
    }
    let agent =
        std::env::current_exe().map_err(|e| failed(format!("cannot find this program: {e}")))?;
    let workers = start_workers(plan, &dirs, &agent, t)?;
    // The launcher starts at once: its own wait for DNS and the ssh banners
    // is the one the cluster runs.
    timing("workers started", started);
    if let Some(dns) = t.dns {
        wait_for_dns(init, &dirs, dns, t)?;
        timing("dns", started);
    }
    check_stop(init)?;
    let launcher = start_launcher(plan, &dirs, &agent, opts, t)?;
    timing("launcher started", started);
    if plan.debug {
        say_debug(plan);
    }
    let mut job = Job {
        plan,
        logs: &dirs.logs,
        started,
        workers,
        up: 0,
        dead: Vec::new(),
    };
    let policy = Policy {
        stop_signals: STOP_SIGNALS.to_vec(),
        // The launcher keeps its own grace period for mpirun.
        grace: None,
        after_stop: AfterStop::Everything,
    };
    let child = supervise::Child {
        pid: launcher,
        group: false,
    };
    let ended = supervise::supervise(init, child, policy, &mut job);
    t.forget(launcher.as_raw());
    for pid in &job.dead {
        t.forget(*pid);
    }
    let summary = fs::read_to_string(dirs.dir.join("termination-log")).unwrap_or_default();
    report(
        plan,
        &ended,
        summary.trim().trim_start_matches("launcher: "),
        started,
    )
}

/// A debug line with the time since `since` (the benchmark reads them).
fn timing(what: &str, since: Instant) {
    tracing::debug!("timing: {what} {} us", since.elapsed().as_micros());
}

/// The private directory: key, state, logs, DNS files.
fn make_dirs(plan: &Plan, t: &mut Teardown) -> Result<Dirs, Exit> {
    let dir = plan.dir.clone();
    files::create_private_dir(&dir).map_err(|e| {
        failed(format!(
            "cannot create {}: {}; set TMPDIR to a writable directory",
            dir.display(),
            io_reason(&e)
        ))
    })?;
    t.dir_made = true;
    // First, so that another run sees this one alive (leftovers.rs).
    let owner = dir.join(leftovers::OWNER);
    let text = leftovers::owner_text(&dir);
    files::write_new(&owner, text.as_bytes(), 0o644)
        .map_err(|e| failed(format!("{}: {}", owner.display(), io_reason(&e))))?;
    if plan.root {
        let entry = leftovers::register(&plan.id, &text)
            .map_err(|e| failed(format!("{}: {}", leftovers::REGISTRY, io_reason(&e))))?;
        t.registered = Some(entry);
    }
    let dirs = Dirs {
        ssh: dir.join("ssh"),
        logs: dir.join("logs"),
        etc: dir.join("etc"),
        dir,
    };
    for d in [&dirs.ssh, &dirs.logs, &dirs.etc] {
        files::create_private_dir(d).map_err(|e| failed(format!("{}: {e}", d.display())))?;
    }
    Ok(dirs)
}

/// A throwaway job key, and every host's /etc files.
fn write_files(plan: &Plan, dirs: &Dirs) -> Result<(), Exit> {
    let write = |path: PathBuf, contents: &[u8], mode: u32| {
        files::write_new(&path, contents, mode).map_err(|e| {
            failed(format!(
                "cannot write {}: {}",
                path.display(),
                io_reason(&e)
            ))
        })
    };
    let key =
        mpijob_api::sshkey::generate(&format!("mpijob-local:{}/{}", plan.namespace, plan.job));
    write(
        dirs.ssh.join("id_ed25519"),
        key.private_pem().as_bytes(),
        0o600,
    )?;
    let public = format!("{}\n", key.public_openssh());
    write(dirs.ssh.join("id_ed25519.pub"), public.as_bytes(), 0o644)?;
    drop(key);
    for (i, host) in plan.hosts.iter().enumerate() {
        let hosts = plan.hosts_file(host);
        write(dirs.etc.join(format!("hosts-{i}")), hosts.as_bytes(), 0o644)?;
    }
    let resolv = plan.resolv_conf();
    write(dirs.etc.join("resolv.conf"), resolv.as_bytes(), 0o644)?;
    write(
        dirs.etc.join("dns-hosts"),
        plan.dns_hosts().as_bytes(),
        0o644,
    )
}

/// As root: namespaces, veth pairs and the bridge.
fn make_network(init: &mut Init, plan: &Plan, t: &mut Teardown) -> Result<(), Exit> {
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
    let outside = net::outside_commands(&plan.bridge, true, &links);
    ip_batch(init, None, &outside).map_err(failed)?;
    // Every namespace's own commands at once; then wait for them all.
    let inside: Vec<_> = links
        .iter()
        .map(|l| (l, net::ip_start(Some(&l.netns), &net::inside_commands(l))))
        .collect();
    let mut first_error = None;
    for (link, started) in inside {
        let done = started.and_then(|child| ip_wait(init, Some(&link.netns), child));
        if let Err(e) = done {
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(failed(e));
    }
    t.netns_ids = t
        .netns
        .iter()
        .filter_map(|n| net::netns_identity(n))
        .collect();
    Ok(())
}

/// `ip -batch`, waited for by the one reaper.
fn ip_batch(init: &mut Init, netns: Option<&str>, commands: &str) -> Result<(), String> {
    let child = net::ip_start(netns, commands)?;
    ip_wait(init, netns, child)
}

fn ip_wait(init: &mut Init, netns: Option<&str>, child: Child) -> Result<(), String> {
    let out = init
        .output(child)
        .map_err(|e| format!("{}: {e}", net::IP))?;
    net::ip_verdict(netns, out.success(), &out.stderr)
}

/// As root: dnsmasq, in a namespace of its own.
fn start_dns(plan: &Plan, dirs: &Dirs, t: &mut Teardown) -> Result<(), Exit> {
    let dns = &plan.hosts[plan.dns_index()];
    let mut cmd = init::child_command(DNSMASQ);
    cmd.args(plan.dnsmasq_args(&dirs.etc.join("dns-hosts")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(&dirs.logs, &dns.hostname).map_err(failed)?);
    host_enter(plan, dns, None).map_err(failed)?.apply(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start {DNSMASQ}: {}", io_reason(&e))))?;
    t.children.push((child.id() as i32, dns.hostname.clone()));
    t.dns = Some(child.id() as i32);
    Ok(())
}

/// dnsmasq writes its pid file once it listens. A query sent before that
/// would cost the launcher's resolver a whole timeout (1 s).
fn wait_for_dns(init: &mut Init, dirs: &Dirs, pid: i32, t: &mut Teardown) -> Result<(), Exit> {
    let pid_file = dirs.dir.join("dnsmasq.pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
        if let Some(status) = init.try_wait(Pid::from_raw(pid)) {
            t.forget(pid);
            let log = fs::read_to_string(dirs.logs.join("mpijob-dns.log")).unwrap_or_default();
            return Err(failed(format!(
                "dnsmasq exited ({}): {}",
                describe(status),
                log.trim().replace('\n', "; ")
            )));
        }
        if Instant::now() >= deadline {
            return Err(failed("dnsmasq did not start within 5s"));
        }
        check_stop(init)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The running worker agents.
struct Workers {
    /// Pid and host name.
    agents: Vec<(i32, String)>,
    /// Word of each one's sshd being ready.
    ready: mpsc::Receiver<Ready>,
}

/// A worker agent in each worker host.
fn start_workers(
    plan: &Plan,
    dirs: &Dirs,
    agent: &Path,
    t: &mut Teardown,
) -> Result<Workers, Exit> {
    let mut commands = Vec::new();
    for (w, host) in plan
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.worker.is_some())
    {
        let i = host.worker.unwrap();
        let state = dirs.dir.join(&host.hostname);
        let finish = dirs.dir.join(format!("{}.finished", host.hostname));
        let mut cmd = init::child_command(agent);
        cmd.args(plan.worker_args(host, &dirs.ssh, &state, &finish).to_argv())
            .env_remove(contract::env::PEERS)
            .env_remove(contract::env::LOG_FORMAT)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches this
            // process, which stops the job in order.
            .process_group(0);
        host_enter(plan, host, Some(&dirs.etc.join(format!("hosts-{w}"))))
            .map_err(failed)?
            .apply(&mut cmd);
        commands.push(((i as usize, host.hostname.clone()), cmd));
    }
    let (tx, rx) = mpsc::channel();
    let mut workers = Vec::new();
    let mut first_error = None;
    // Every one is recorded before any error returns, so that the teardown
    // stops whatever started.
    for ((i, hostname), spawned) in spawn_all(commands, &mut t.spawners) {
        let mut child: Child = match spawned {
            Ok(child) => child,
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    failed(format!(
                        "cannot start the worker agent {}: {}",
                        agent.display(),
                        io_reason(&e)
                    ))
                });
                continue;
            }
        };
        let pid = child.id() as i32;
        t.children.push((pid, hostname.clone()));
        workers.push((pid, hostname.clone()));
        let stderr = child.stderr.take().expect("piped");
        match log_file(&dirs.logs, &hostname) {
            Ok(log) => {
                let tx = tx.clone();
                std::thread::spawn(move || follow(stderr, log, i, tx));
            }
            Err(e) => {
                first_error.get_or_insert(failed(e));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Workers {
        agents: workers,
        ready: rx,
    })
}

/// Spawn every command, from a few threads at once: entering a host (its
/// namespaces and bind mounts) happens between fork and exec, and costs a
/// few milliseconds that the parent would otherwise wait out one by one.
/// In the order given. The threads stay until `spawners` lets them go: a
/// child's parent-death signal ([`init::child_command`]) comes when the
/// thread that forked it ends.
fn spawn_all<T: Send + 'static>(
    commands: Vec<(T, std::process::Command)>,
    spawners: &mut Spawners,
) -> Vec<(T, std::io::Result<Child>)> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let per_thread = commands.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<_>> = Vec::new();
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        chunks.push(commands.by_ref().take(per_thread).collect());
    }
    let (tx, rx) = mpsc::channel();
    let count = chunks.len();
    for (n, chunk) in chunks.into_iter().enumerate() {
        let tx = tx.clone();
        let gate = std::sync::Arc::clone(&spawners.gate);
        spawners.threads.push(std::thread::spawn(move || {
            let spawned: Vec<_> = chunk
                .into_iter()
                .map(|(tag, mut cmd)| {
                    let child = cmd.spawn();
                    (tag, child)
                })
                .collect();
            let _ = tx.send((n, spawned));
            drop(tx);
            let (released, cv) = &*gate;
            let mut released = released.lock().unwrap_or_else(|e| e.into_inner());
            while !*released {
                released = cv.wait(released).unwrap_or_else(|e| e.into_inner());
            }
        }));
    }
    drop(tx);
    let mut results: Vec<(usize, Vec<_>)> = rx.iter().take(count).collect();
    results.sort_by_key(|(n, _)| *n);
    results.into_iter().flat_map(|(_, v)| v).collect()
}

/// The threads that spawned children, kept until the children are gone.
#[derive(Default)]
pub struct Spawners {
    gate: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spawners {
    /// Let the threads end: call once their children are stopped.
    fn release(&mut self) {
        let (released, cv) = &*self.gate;
        *released.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Spawners {
    fn drop(&mut self) {
        self.release();
    }
}

/// Debug mode, as local mode has it: the launcher holds; the replicas'
/// debug commands are for pods and are not run here.
fn say_debug(plan: &Plan) {
    let inside = plan.hosts[plan.launcher_index()]
        .netns
        .as_ref()
        .map(|ns| format!(" inside the launcher's host: ip netns exec {ns} sh -c '<the command>'"))
        .unwrap_or_default();
    say(format!(
        "debug mode: the launcher waits for the workers, prints the mpirun command on stdout and stays up instead of running it; run it by hand in another terminal{inside}; Ctrl-C ends the job and removes the hosts (the replicas' debug commands are for pods, and are not run here)"
    ));
}

/// The launcher agent in its host, with the controller's arguments.
fn start_launcher(
    plan: &Plan,
    dirs: &Dirs,
    agent: &Path,
    opts: &Options,
    t: &mut Teardown,
) -> Result<Pid, Exit> {
    let launcher_host = &plan.hosts[plan.launcher_index()];
    let termination_log = dirs.dir.join("termination-log");
    let state = dirs.dir.join("launcher");
    let mut cmd = init::child_command(agent);
    cmd.args(
        plan.launcher_args(&dirs.ssh, &state, &termination_log, opts.timeout)
            .to_argv(),
    )
    .env_remove(contract::env::LOG_FORMAT)
    .env_remove(contract::env::HOSTS)
    .stdin(Stdio::null())
    .process_group(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if plan.yield_when_idle(cores) && std::env::var_os(YIELD_WHEN_IDLE).is_none() {
        say(format!(
            "{} ranks share this machine's {cores} cores: Open MPI's ranks yield when idle ({YIELD_WHEN_IDLE}=1) instead of spinning",
            plan.ranks()
        ));
        cmd.env(YIELD_WHEN_IDLE, "1");
    }
    let launcher_hosts = dirs.etc.join(format!("hosts-{}", plan.launcher_index()));
    host_enter(plan, launcher_host, Some(&launcher_hosts))
        .map_err(failed)?
        .apply(&mut cmd);
    let launcher = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start the launcher agent: {e}")))?;
    let launcher = Pid::from_raw(launcher.id() as i32);
    t.children
        .push((launcher.as_raw(), launcher_host.hostname.clone()));
    Ok(launcher)
}

/// One line on how the job went; the exit code is the launcher's.
fn report(plan: &Plan, ended: &Ended, summary: &str, started: Instant) -> Result<i32, Exit> {
    if let Some(Ending::Failed { why, .. }) = &ended.ending {
        return Err(failed(format!("job {} failed: {why}", plan.job)));
    }
    let code = ended.code;
    match (code, ended.stop) {
        (0, stop) if plan.debug => say(format!(
            "job {}: debug mode ended{} after {:.1?}; nothing was run but what you ran by hand",
            plan.job,
            stop.map(|s| format!(" by {s}")).unwrap_or_default(),
            started.elapsed()
        )),
        (0, _) => say(format!(
            "job {} succeeded in {:.1?}",
            plan.job,
            started.elapsed()
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
    Ok(code)
}

/// Local mode's senses while the launcher runs: the workers coming up, and
/// a worker agent that dies before the job ends.
struct Job<'a> {
    plan: &'a Plan,
    logs: &'a Path,
    started: Instant,
    workers: Workers,
    /// How many workers are up.
    up: u32,
    /// Workers reaped already.
    dead: Vec<i32>,
}

impl Job<'_> {
    fn came_up(&mut self, i: usize, at: Instant) {
        self.up += 1;
        let (plan, up) = (self.plan, self.up);
        let host = plan.worker(i);
        say(format!(
            "{} is up ({}, sshd on port {}) [{up}/{}, {:.0?}]",
            host.hostname,
            host.addr,
            plan.port,
            plan.sshd_hosts(),
            at - self.started
        ));
        if up == plan.sshd_hosts() {
            tracing::debug!(
                "timing: set-up {} us for {} workers",
                (at - self.started).as_micros(),
                plan.workers
            );
        }
    }

    /// The line for worker agent `name` that exited, with its log's last
    /// line.
    fn died(&self, name: &str, status: WaitStatus) -> String {
        let log = self.logs.join(format!("{name}.log"));
        let tail = fs::read_to_string(&log)
            .ok()
            .and_then(|s| {
                s.lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        format!(
            "the worker agent of {name} exited ({}) before the job ended: {tail}",
            describe(status)
        )
    }
}

impl Watcher for Job<'_> {
    fn patience(&self, _: &Supervisor) -> Duration {
        Duration::from_millis(50)
    }

    fn look(&mut self, look: Look<'_>) -> Vec<Event> {
        while let Ok(Ready(i, at)) = self.workers.ready.try_recv() {
            self.came_up(i, at);
        }
        let mut events = Vec::new();
        for &(pid, status) in look.reaped {
            let Some((_, name)) = self.workers.agents.iter().find(|(p, _)| *p == pid.as_raw())
            else {
                continue;
            };
            self.dead.push(pid.as_raw());
            // The first death stops the job; once it is stopping, a death
            // changes nothing.
            if events.is_empty() && !look.state.stopping() {
                let line = self.died(name, status);
                say(&line);
                events.push(Event::Failed {
                    code: FAILED,
                    why: line,
                });
            }
        }
        events
    }

    fn tell(&mut self, action: &Action) {
        if let Action::Stopping(sig) = action {
            say(format!("received {sig}: stopping the job"));
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
fn follow(stderr: impl std::io::Read, mut log: fs::File, i: usize, tx: mpsc::Sender<Ready>) {
    let mut ready = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if !ready && line.contains("ready: sshd accepts connections") {
            ready = true;
            let _ = tx.send(Ready(i, Instant::now()));
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
    /// The threads that spawned the worker agents: released once every
    /// child is stopped.
    spawners: Spawners,
    /// As root, the run's entry under `leftovers::REGISTRY`.
    registered: Option<PathBuf>,
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
            spawners: Spawners::default(),
            registered: None,
        }
    }

    fn forget(&mut self, pid: i32) {
        self.children.retain(|(p, _)| *p != pid);
    }

    /// Stop every process (SIGTERM, then SIGKILL after a second), remove
    /// the namespaces and the bridge, then the directory.
    fn run(&mut self, init: &mut Init) {
        let started = Instant::now();
        self.stop_processes(init);
        self.spawners.release();
        timing("processes stopped", started);
        if self.keep {
            self.say_kept();
        } else {
            self.remove(init);
        }
    }

    fn stop_processes(&mut self, init: &mut Init) {
        for (pid, _) in &self.children {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.children.is_empty() && Instant::now() < deadline {
            for (pid, _) in init.reap() {
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
            let _ = init.reap();
        });
        init.stop_remaining(Duration::from_millis(500));
    }

    /// With `--keep`: what stays, and how to remove it.
    fn say_kept(&self) {
        // Marked kept, so that the next run leaves it to --clean.
        let owner = self.dir.join(leftovers::OWNER);
        for file in std::iter::once(&owner).chain(self.registered.as_ref()) {
            if let Ok(text) = fs::read_to_string(file) {
                let _ = fs::write(file, leftovers::kept_text(&text));
            }
        }
        if !self.netns.is_empty() {
            say(format!(
                "--keep: kept network namespaces {} and bridge {} (remove: mpijob-agent local --clean, or {})",
                self.netns.join(" "),
                self.bridge.as_deref().unwrap_or("-"),
                self.remove_command()
            ));
        }
        if self.dir_made {
            say(format!(
                "--keep: kept {} (key, logs, hostfile; remove: rm -rf {})",
                self.dir.display(),
                self.dir.display()
            ));
        }
    }

    fn remove(&self, init: &mut Init) {
        if !self.netns.is_empty() || self.bridge.is_some() {
            let commands = net::delete_commands(self.bridge.as_deref(), &self.netns);
            if let Err(e) = ip_batch(init, None, &commands) {
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
        if let Some(entry) = &self.registered {
            let _ = fs::remove_file(entry);
        }
    }

    fn remove_command(&self) -> String {
        net::delete_command_line(self.bridge.as_deref(), &self.netns)
    }
}
