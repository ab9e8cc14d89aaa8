//! `mpijob-agent launcher`: wait for every worker (DNS, then the ssh
//! banner), write the hostfile and the ssh client files, then run mpirun as
//! a child behind [`Init`] and exit with its code.
//!
//! The wait runs on a single-threaded tokio runtime, which is shut down
//! before mpirun starts: from then on the synchronous init loop owns every
//! `waitpid`, as in the worker.

use std::fs;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use mpijob_api::sshkey::JobKey;
use mpijob_api::{contract, validate};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tracing::{error, info, warn};

use crate::client;
use crate::errors::io_reason;
use crate::errors::Exit;
use crate::files;
use crate::hostfile::{self, HostEntry};
use crate::hosts::{self, Outcome};
use crate::init::{self, Init};
use crate::keys;
use crate::log;
use crate::mpirun::{self, Failure, Implementation};
use crate::supervise::{self, Action, AfterStop, Event, Look, Policy, Supervisor, Watcher};
use crate::user::{self, User};

/// The launcher's settings: the pod contract's arguments, from flags or
/// environment (see cli.rs). `mca` holds `KEY=VALUE` entries as given.
pub type Options = mpijob_api::contract::LauncherArgs;

/// The checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The workers, as mpirun and ssh will name them.
    pub hosts: Vec<String>,
    /// The slots of each worker, in the order of `hosts`.
    pub slots: Vec<u32>,
    /// ssh host patterns for the client config.
    pub peers: Vec<String>,
    pub mca: Vec<(String, String)>,
}

/// Check the settings. The only I/O is `read`, which reads `--hostfile`
/// ([`hostfile::read_given`]) once the flags are known not to conflict. The
/// error is the one line to show.
pub fn check(
    o: &Options,
    read: impl FnOnce(&Path) -> Result<Vec<HostEntry>, String>,
) -> Result<Checked, String> {
    if o.slots == 0 {
        return Err(
            "--slots 0: each worker needs at least one slot; give --slots 1 or more".into(),
        );
    }
    let derived = [o.job.is_some(), o.namespace.is_some(), o.workers.is_some()];
    let (hosts, slots, peers) = match (o.hosts.is_empty(), o.hostfile.is_some(), derived) {
        (false, true, _) => {
            return Err("--hosts and --hostfile both given; give one or the other".into())
        }
        (true, true, [false, false, false]) => {
            let entries = read(o.hostfile.as_deref().expect("--hostfile is given"))?;
            for e in &entries {
                if let Err(e) = client::check_peer(&e.host) {
                    return Err(format!("--hostfile: {e}; give host names or addresses"));
                }
            }
            let (hosts, slots) = hostfile::merged(&entries, o.slots);
            (hosts.clone(), slots, hosts)
        }
        (true, true, _) => {
            return Err(
                "--hostfile and --job/--namespace/--workers both given; give one or the other"
                    .into(),
            )
        }
        (false, false, [false, false, false]) => {
            let mut seen = std::collections::HashSet::new();
            for h in &o.hosts {
                if let Err(e) = client::check_peer(h) {
                    return Err(format!(
                        "--hosts: {e}; give host names or addresses separated by commas"
                    ));
                }
                if !seen.insert(h) {
                    return Err(format!(
                        "--hosts: {h} is listed twice; give each worker once and use --slots for more ranks per worker"
                    ));
                }
            }
            let slots = vec![o.slots; o.hosts.len()];
            (o.hosts.clone(), slots, o.hosts.clone())
        }
        (false, false, _) => {
            return Err(
                "--hosts and --job/--namespace/--workers both given; give one or the other".into(),
            )
        }
        (true, false, [true, true, true]) => {
            let (job, ns) = (o.job.as_deref().unwrap(), o.namespace.as_deref().unwrap());
            let workers = o.workers.unwrap();
            for (flag, v) in [("--job", job), ("--namespace", ns)] {
                let ok = if flag == "--job" {
                    validate::is_dns_1035_label(v)
                } else {
                    validate::is_dns_1123_label(v)
                };
                if !ok {
                    return Err(format!(
                        "{flag} {v:?}: not a DNS label; give the MPIJob's {} as Kubernetes names it",
                        if flag == "--job" { "name" } else { "namespace" }
                    ));
                }
            }
            if workers == 0 {
                return Err(
                    "--workers 0: a job needs at least one worker; give --workers 1 or more".into(),
                );
            }
            let hosts: Vec<String> = (0..workers)
                .map(|i| contract::worker_host(job, ns, i))
                .collect();
            let slots = vec![o.slots; hosts.len()];
            (hosts, slots, contract::peer_patterns(job, ns))
        }
        (true, false, [false, false, false]) => {
            return Err(
                "no workers given: pass --hosts h1,h2, --hostfile FILE, or --job NAME --namespace NS --workers N"
                    .into(),
            )
        }
        (true, false, _) => {
            return Err(
                "--job, --namespace and --workers go together; give all three, or --hosts".into(),
            )
        }
    };
    if o.port == 0 {
        return Err("--port 0: give the workers' ssh port, e.g. 2222".into());
    }
    let mut mca = Vec::new();
    for raw in &o.mca {
        let Some((k, v)) = raw.split_once('=') else {
            return Err(format!(
                "--mca {raw:?}: missing '='; give KEY=VALUE, e.g. --mca=btl=^openib"
            ));
        };
        if let Err(e) = validate::mca_key(k).and_then(|()| validate::mca_value(k, v)) {
            return Err(format!("--mca {raw:?}: {}", e.message));
        }
        mca.push((k.to_string(), v.to_string()));
    }
    if o.cmd.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(
            "no command: give the MPI program after --, e.g. mpijob-agent launcher --hosts h1 -- ./hello"
                .into(),
        );
    }
    if let Some(dir) = &o.state_dir {
        check_quotable(dir, "--state-dir")?;
    }
    if o.kubeflow && o.mpi_implementation.is_none() {
        return Err(
            "--kubeflow without --mpi-implementation: give the job's mpiImplementation (openmpi, mpich or intel); its variables and hostfile depend on it"
                .into(),
        );
    }
    Ok(Checked {
        hosts,
        slots,
        peers,
        mca,
    })
}

/// The state directory ends up in `ssh -F <dir>/ssh_config`, which Open MPI
/// splits at spaces, and in a single-quoted shell word for Hydra.
fn check_quotable(dir: &Path, flag: &str) -> Result<(), String> {
    let s = dir.display().to_string();
    match s
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '$' | '`'))
    {
        Some(c) => Err(format!(
            "{flag} {s:?}: contains {c:?}, which mpirun's ssh command line cannot carry; choose a path without it"
        )),
        None => Ok(()),
    }
}

/// `program` as a command line runs it: a path as it is, a name from PATH.
fn find_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    path?
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| is_executable(p))
}

/// The mpirun to run: `<mpi-home>/bin/mpirun`, else `mpirun` on PATH.
pub fn find_mpirun(mpi_home: Option<&Path>, path: Option<&str>) -> Result<PathBuf, String> {
    if let Some(home) = mpi_home {
        let candidate = home.join("bin").join("mpirun");
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(format!(
                "--mpi-home {}: {} does not exist or is not executable; point --mpi-home at the MPI installation (the directory holding bin/mpirun), or leave it out to use mpirun from PATH",
                home.display(),
                candidate.display()
            ))
        };
    }
    find_program("mpirun", path).ok_or_else(|| {
        "mpirun is not on PATH; install MPI in the image or pass --mpi-home DIR (with DIR/bin/mpirun)".into()
    })
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// Run the launcher; returns the exit code. Errors are reported here (log
/// and termination message), so the caller only exits.
pub fn run(opts: Options) -> Result<i32> {
    // First, so that no signal is lost and no orphan escapes.
    let mut init = Init::new()?;
    match launch(&mut init, &opts) {
        Ok(code) => Ok(code),
        Err(exit) => {
            if exit.signal.is_some() {
                info!("{}", exit.line);
            } else {
                error!("{}", exit.line);
            }
            let line = format!("launcher: {}", exit.line);
            log::termination_message_to(&opts.termination_log, &line);
            init.stop_remaining(Duration::from_secs(1));
            Ok(exit.code)
        }
    }
}

fn launch(init: &mut Init, opts: &Options) -> Result<i32, Exit> {
    let checked = check(opts, hostfile::read_given).map_err(Exit::bad_input)?;
    let (mpirun_path, implementation) = choose_mpi(init, opts, &checked)?;
    let mounted = keys::load(&opts.ssh_dir).map_err(|e| Exit::bad_input(format!("{e:#}")))?;
    let me = User::current();
    let dir = state_dir(opts, &me)?;
    let paths = Paths::in_dir(&dir);
    write_files(&paths, opts, &checked, implementation, &mounted.key).map_err(Exit::error)?;
    drop(mounted);
    info!(
        workers = checked.hosts.len(),
        slots = %slots_summary(&checked.slots),
        ranks = checked.slots.iter().map(|&n| u64::from(n)).sum::<u64>(),
        port = opts.port,
        mpi = implementation.name(),
        mpirun = %mpirun_path.display(),
        state_dir = %dir.display(),
        "launcher starting: waiting for the workers"
    );
    let (callback, answered) = wait_for_workers(init, opts, &checked.hosts)?;
    // mpirun's ssh goes to the addresses that just answered, by name: a DNS
    // server that stumbles now can no longer fail the launch.
    let pins = client::pinned_addresses(&checked.hosts, &answered, opts.port);
    if !pins.is_empty() {
        let config = fs::read_to_string(&paths.ssh_config)
            .map_err(|e| Exit::error(anyhow::anyhow!("{}: {e}", paths.ssh_config.display())))?;
        files::write_private(&paths.ssh_config, format!("{config}{pins}").as_bytes())
            .map_err(Exit::error)?;
    }
    let iface = callback.as_deref().and_then(interface_of);
    let plan = mpirun::Plan {
        mpirun: &mpirun_path,
        implementation,
        hostfile: &paths.hostfile,
        slots: &checked.slots,
        mca: &checked.mca,
        extra_args: &opts.extra_mpi_args,
        cmd: &opts.cmd,
        root: me.is_root(),
        ssh_config: &paths.ssh_config,
        ssh_wrapper: &paths.wrapper,
        callback_host: callback.as_deref(),
        callback_iface: iface.as_deref(),
        kubeflow: opts.kubeflow,
    };
    if opts.hold {
        return Ok(hold(init, &plan));
    }
    run_mpirun(init, opts, &plan)
}

/// The network interface that holds local address `addr`.
fn interface_of(addr: &str) -> Option<String> {
    let interfaces: Vec<(String, IpAddr)> = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|i| {
            let a = i.address?;
            let ip = a
                .as_sockaddr_in()
                .map(|s| IpAddr::V4(s.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))?;
            Some((i.interface_name, ip))
        })
        .collect();
    mpirun::interface_with(&interfaces, addr)
}

/// The slots per worker for the log: `2` when every worker has 2, else
/// each worker's, in order (`1,3,2`).
fn slots_summary(slots: &[u32]) -> String {
    match mpirun::equal_slots(slots) {
        Some(n) => n.to_string(),
        None => slots
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Debug mode: say how to run mpirun by hand, then stay up until stopped.
/// A signal ends it with 0: staying up was the whole job.
fn hold(init: &mut Init, plan: &mpirun::Plan) -> i32 {
    let inv = mpirun::assemble(plan, |k| std::env::var_os(k).is_some());
    info!(
        "debug mode: every worker answers and the hostfile and the ssh client files are written; mpirun is not run. To run it by hand, open a shell here (kubectl exec -it <this pod> -- sh) and run:"
    );
    // Alone on stdout, to copy as it is.
    println!("{}", inv.shell_line());
    loop {
        let events = init.wait(None, Duration::from_secs(60));
        // Whatever a user started by hand and left here is reaped.
        init.reap();
        if let Some(sig) = events.signals.first() {
            info!("{sig} received: leaving debug mode");
            init.stop_remaining(Duration::from_secs(1));
            return 0;
        }
    }
}

/// The mpirun to run, and which MPI it is.
fn choose_mpi(
    init: &mut Init,
    opts: &Options,
    checked: &Checked,
) -> Result<(PathBuf, Implementation), Exit> {
    let path = std::env::var("PATH").ok();
    if opts.kubeflow {
        // The command is the user's own, which need not be mpirun. When it
        // is an mpirun or mpiexec, it must be the job's MPI.
        let asked = opts
            .mpi_implementation
            .expect("checked: --kubeflow has --mpi-implementation");
        let program = &opts.cmd[0];
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let runner = (name.starts_with("mpirun") || name.starts_with("mpiexec"))
            .then(|| find_program(program, path.as_deref()))
            .flatten();
        let Some(runner) = runner else {
            return Ok((PathBuf::from(program), asked));
        };
        return match detect(init, &runner) {
            Ok(found) if found != asked => Err(Exit::bad_input(mpirun::kubeflow_mismatch(
                asked, found, &runner,
            ))),
            _ => Ok((runner, asked)),
        };
    }
    let found = find_mpirun(opts.mpi_home.as_deref(), path.as_deref());
    let mpirun_path = found.map_err(Exit::bad_input)?;
    let implementation = match opts.mpi_implementation {
        // Asked for by name: what mpirun says it is must agree. When it
        // says nothing known, the flag stands.
        Some(asked) => match detect(init, &mpirun_path) {
            Ok(found) if found != asked => {
                return Err(Exit::bad_input(mpirun::mismatch(
                    asked,
                    found,
                    &mpirun_path,
                )))
            }
            _ => asked,
        },
        None => detect(init, &mpirun_path).map_err(Exit::bad_input)?,
    };
    if implementation != Implementation::OpenMpi && !checked.mca.is_empty() {
        warn!(
            "--mca does not apply to {}: ignoring {} MCA parameter(s); use --extra-mpi-args or the environment for it",
            implementation.name(),
            checked.mca.len()
        );
    }
    Ok((mpirun_path, implementation))
}

/// The launcher's private state directory, made.
fn state_dir(opts: &Options, me: &User) -> Result<PathBuf, Exit> {
    let dir = opts.state_dir.clone().unwrap_or_else(|| {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        user::default_state_dir(me, xdg.as_deref()).join("launcher")
    });
    check_quotable(&dir, "--state-dir").map_err(Exit::bad_input)?;
    match (&opts.state_dir, dir.parent()) {
        // The default parent may sit in a shared /tmp: it must be ours and
        // private too, or another user could swap the files mpirun's ssh
        // reads while the launcher waits for the workers.
        (None, Some(parent)) => user::prepare_state_dir(parent, me).map_err(Exit::error)?,
        (Some(_), Some(parent)) => {
            let _ = fs::create_dir_all(parent);
        }
        (_, None) => {}
    }
    user::prepare_state_dir(&dir, me).map_err(Exit::error)?;
    Ok(dir)
}

/// The files in the state directory.
struct Paths {
    identity: PathBuf,
    known_hosts: PathBuf,
    ssh_config: PathBuf,
    hostfile: PathBuf,
    /// `ssh -F <ssh_config>` as one program, for Hydra.
    wrapper: PathBuf,
}

impl Paths {
    fn in_dir(dir: &Path) -> Paths {
        Paths {
            identity: dir.join("job_key"),
            known_hosts: dir.join("known_hosts"),
            ssh_config: dir.join("ssh_config"),
            hostfile: dir.join("hostfile"),
            wrapper: dir.join("ssh"),
        }
    }
}

/// The job key's copy, the ssh client files, the hostfile and the ssh
/// wrapper.
fn write_files(
    paths: &Paths,
    opts: &Options,
    checked: &Checked,
    implementation: Implementation,
    key: &JobKey,
) -> Result<()> {
    files::write_private(&paths.identity, key.private_pem().as_bytes())?;
    let client_files = client::ClientFiles {
        identity: &paths.identity,
        known_hosts: &paths.known_hosts,
        config: &paths.ssh_config,
    };
    client::write_files(&client_files, &checked.peers, opts.port, key)?;
    let text = hostfile::render(implementation, &checked.hosts, &checked.slots);
    files::write_private(&paths.hostfile, text.as_bytes())?;
    let wrapper = mpirun::ssh_wrapper_script(&paths.ssh_config);
    files::write_atomic(&paths.wrapper, wrapper.as_bytes(), 0o700)
}

/// Wait until every worker answers (the tokio runtime of the wait is gone
/// again before mpirun starts). Returns the address the workers reach this
/// launcher at (Hydra's proxies call back), when known, and the address
/// each worker answered on.
fn wait_for_workers(
    init: &mut Init,
    opts: &Options,
    hosts: &[String],
) -> Result<(Option<String>, Vec<Option<IpAddr>>), Exit> {
    let started = Instant::now();
    match hosts::wait_blocking(init, hosts, opts.port, opts.timeout)? {
        Outcome::AllUp(local, answered) => {
            info!(
                "all {} workers answer on port {} after {:.1?}",
                hosts.len(),
                opts.port,
                started.elapsed()
            );
            Ok((local.map(|ip| ip.to_string()), answered))
        }
        Outcome::TimedOut(status) => Err(Exit::failed(hosts::timeout_message(
            opts.timeout,
            opts.port,
            hosts,
            &status,
            hosts::Server::Agent,
        ))),
        Outcome::Stopped(sig) => Err(hosts::stopped(sig)),
    }
}

/// Run mpirun behind the supervisor, and sum up how it went.
fn run_mpirun(init: &mut Init, opts: &Options, plan: &mpirun::Plan) -> Result<i32, Exit> {
    let inv = mpirun::assemble(plan, |k| std::env::var_os(k).is_some());
    info!("starting {}", inv.argv.join(" "));
    // Its own process group, so that a signal reaches mpirun and its ssh
    // clients together, as a terminal's Ctrl-C would.
    let mut command = init::child_command(&inv.argv[0]);
    command.args(&inv.argv[1..]).process_group(0);
    let mut child = command
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Exit::failed(format!(
                "cannot run {}: {}; check --mpi-home",
                plan.mpirun.display(),
                io_reason(&e)
            ))
        })?;
    let pid = Pid::from_raw(child.id() as i32);
    let tees = Tees::start(&mut child);
    let policy = Policy {
        stop_signals: vec![Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP],
        grace: Some(opts.grace_period),
        // mpirun's code after a signal is whatever its ranks made of it.
        after_stop: AfterStop::Signal,
    };
    let child = supervise::Child { pid, group: true };
    let ended = supervise::supervise(init, child, policy, &mut Mpirun);
    // Whatever mpirun left behind (its ssh clients) goes now, so that the
    // pipes close.
    init.stop_remaining(Duration::from_secs(1));
    let failure = tees.finish(Duration::from_secs(1));
    let (code, stop) = (ended.code, ended.stop);
    let line = mpirun::summary(code, stop.map(|s| s.as_str()), &failure);
    if code == 0 {
        info!("{line}");
    } else {
        error!("{line}");
    }
    log::termination_message_to(&opts.termination_log, &line);
    Ok(code)
}

/// `mpirun --version`, read for the implementation.
fn detect(init: &mut Init, mpirun_path: &Path) -> Result<Implementation, String> {
    let out = init::child_command(mpirun_path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|child| init.output(child))
        .map_err(|e| {
            format!(
                "cannot run {} --version: {}; check --mpi-home",
                mpirun_path.display(),
                io_reason(&e)
            )
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    mpirun::detect(&text).ok_or_else(|| {
        format!(
            "cannot tell which MPI {} is from its --version output; pass --mpi-implementation openmpi, mpich or intel",
            mpirun_path.display()
        )
    })
}

/// mpirun needs no senses beyond the supervisor's own: only its words.
struct Mpirun;

impl Watcher for Mpirun {
    fn patience(&self, _: &Supervisor) -> Duration {
        Duration::from_millis(250)
    }

    fn look(&mut self, _: Look<'_>) -> Vec<Event> {
        Vec::new()
    }

    fn tell(&mut self, action: &Action) {
        supervise::tell_common("mpirun", action);
    }
}

/// mpirun's stdout and stderr, copied through unchanged and read for the
/// failing rank and host.
struct Tees {
    failure: Arc<Mutex<Failure>>,
    done: mpsc::Receiver<()>,
    pipes: usize,
}

impl Tees {
    fn start(child: &mut std::process::Child) -> Tees {
        let failure = Arc::new(Mutex::new(Failure::default()));
        let (done_tx, done) = mpsc::channel();
        let mut pipes = 0;
        if let Some(p) = child.stdout.take() {
            tee(p, std::io::stdout(), &failure, &done_tx);
            pipes += 1;
        }
        if let Some(p) = child.stderr.take() {
            tee(p, std::io::stderr(), &failure, &done_tx);
            pipes += 1;
        }
        Tees {
            failure,
            done,
            pipes,
        }
    }

    /// What the pipes told, once they are closed or `patience` has passed.
    fn finish(self, patience: Duration) -> Failure {
        let deadline = Instant::now() + patience;
        for _ in 0..self.pipes {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
        let failure = self.failure.lock().unwrap().clone();
        failure
    }
}

/// Copy a pipe to `out` unchanged, reading its lines for the failure
/// summary; says on `done` when the pipe is closed.
fn tee<R: Read + Send + 'static, W: Write + Send + 'static>(
    mut pipe: R,
    mut out: W,
    failure: &Arc<Mutex<Failure>>,
    done: &mpsc::Sender<()>,
) -> std::thread::JoinHandle<()> {
    let failure = failure.clone();
    let done = done.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut line = Vec::new();
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            for &b in &buf[..n] {
                if b == b'\n' {
                    failure
                        .lock()
                        .unwrap()
                        .observe(&String::from_utf8_lossy(&line));
                    line.clear();
                } else if line.len() < 4096 {
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            failure
                .lock()
                .unwrap()
                .observe(&String::from_utf8_lossy(&line));
        }
        let _ = done.send(());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            hosts: Vec::new(),
            hostfile: None,
            job: Some("pi".into()),
            namespace: Some("team-a".into()),
            workers: Some(2),
            slots: 1,
            port: 2222,
            ssh_dir: "/root/.ssh".into(),
            state_dir: None,
            mpi_home: None,
            mpi_implementation: None,
            mca: Vec::new(),
            extra_mpi_args: Vec::new(),
            timeout: Duration::from_secs(60),
            grace_period: Duration::from_secs(10),
            termination_log: contract::TERMINATION_LOG.into(),
            hold: false,
            kubeflow: false,
            cmd: vec!["./hello".into()],
        }
    }

    #[test]
    fn job_flags_derive_the_worker_names_and_peers() {
        let c = check(&opts(), no_file).unwrap();
        assert_eq!(
            c.hosts,
            ["pi-worker-0.pi.team-a.svc", "pi-worker-1.pi.team-a.svc"]
        );
        assert_eq!(c.peers, contract::peer_patterns("pi", "team-a"));
    }

    #[test]
    fn hosts_flag_names_them_directly() {
        let mut o = opts();
        (o.job, o.namespace, o.workers) = (None, None, None);
        o.hosts = vec!["node1".into(), "198.18.0.7".into()];
        let c = check(&o, no_file).unwrap();
        assert_eq!(c.hosts, ["node1", "198.18.0.7"]);
        assert_eq!(c.peers, c.hosts);
        o.hosts.push("node1".into());
        assert!(check(&o, no_file)
            .unwrap_err()
            .contains("node1 is listed twice"));
        o.hosts = vec!["a b".into()];
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("--hosts: \"a b\" contains ' '"));
    }

    #[test]
    fn the_log_gives_one_slot_count_or_each() {
        assert_eq!(slots_summary(&[2, 2, 2]), "2");
        assert_eq!(slots_summary(&[1, 3, 2]), "1,3,2");
    }

    fn no_file(p: &Path) -> Result<Vec<HostEntry>, String> {
        panic!("{} read without --hostfile", p.display())
    }

    #[test]
    fn hostfile_gives_the_hosts_and_their_slots() {
        let mut o = opts();
        (o.job, o.namespace, o.workers) = (None, None, None);
        o.hostfile = Some("hosts".into());
        o.slots = 2;
        let listed = || hostfile::parse("n1 slots=4\nn2\n10.0.0.3:1\nn1:1\n");
        let read = |p: &Path| {
            assert_eq!(p, Path::new("hosts"));
            listed()
        };
        let c = check(&o, read).unwrap();
        assert_eq!(c.hosts, ["n1", "n2", "10.0.0.3"]);
        assert_eq!(c.slots, [5, 2, 1]);
        assert_eq!(c.peers, c.hosts);
        o.hosts = vec!["n1".into()];
        assert_eq!(
            check(&o, |_: &Path| listed()).unwrap_err(),
            "--hosts and --hostfile both given; give one or the other"
        );
        o.hosts = Vec::new();
        o.workers = Some(2);
        assert_eq!(
            check(&o, |_: &Path| listed()).unwrap_err(),
            "--hostfile and --job/--namespace/--workers both given; give one or the other"
        );
    }

    #[test]
    fn mca_is_checked_like_the_controller_does() {
        let mut o = opts();
        o.mca = vec!["btl=^openib".into(), "plm_rsh_args=-p 22".into()];
        assert_eq!(
            check(&o, no_file).unwrap().mca,
            [
                ("btl".to_string(), "^openib".to_string()),
                ("plm_rsh_args".to_string(), "-p 22".to_string())
            ]
        );
        for (raw, want) in [
            (
                "-btl=tcp",
                "--mca \"-btl=tcp\": key \"-btl\" must not start with '-'",
            ),
            (
                "bt\nl=tcp",
                "--mca \"bt\\nl=tcp\": key \"bt\\nl\" must not contain a line break",
            ),
            (
                "btl=tcp\nself",
                "--mca \"btl=tcp\\nself\": value must not contain a line break",
            ),
            ("btl", "--mca \"btl\": missing '='"),
        ] {
            o.mca = vec![raw.into()];
            let err = check(&o, no_file).unwrap_err();
            assert!(err.starts_with(want), "{raw:?}: {err}");
        }
    }

    #[test]
    fn other_bad_input_is_named() {
        let mut o = opts();
        o.cmd = Vec::new();
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("no command: give the MPI program after --"));
        o.cmd = vec![String::new()];
        assert!(check(&o, no_file).is_err());
        let mut o = opts();
        o.workers = Some(0);
        assert!(check(&o, no_file).unwrap_err().starts_with("--workers 0"));
        o.workers = None;
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("--job, --namespace and --workers go together"));
        let mut o = opts();
        o.hosts = vec!["x".into()];
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("--hosts and --job"));
        let mut o = opts();
        o.slots = 0;
        assert!(check(&o, no_file).unwrap_err().starts_with("--slots 0"));
        let mut o = opts();
        o.job = Some("Pi".into());
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("--job \"Pi\": not a DNS label"));
        let mut o = opts();
        o.state_dir = Some("/tmp/my state".into());
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("--state-dir \"/tmp/my state\": contains ' '"));
        let mut o = opts();
        (o.job, o.namespace, o.workers) = (None, None, None);
        assert!(check(&o, no_file)
            .unwrap_err()
            .starts_with("no workers given"));
    }

    #[test]
    fn mpirun_is_found_in_mpi_home_or_on_path() {
        let err = find_mpirun(Some(Path::new("/nonexistent")), None).unwrap_err();
        assert!(err.starts_with(
            "--mpi-home /nonexistent: /nonexistent/bin/mpirun does not exist or is not executable"
        ));
        assert_eq!(
            find_mpirun(None, Some("/nonexistent:/proc")).unwrap_err(),
            "mpirun is not on PATH; install MPI in the image or pass --mpi-home DIR (with DIR/bin/mpirun)"
        );
    }
}
