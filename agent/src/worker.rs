//! `mpijob-agent worker`: install the job's keys, generate and check the
//! sshd config, point plain `ssh` at the peers, then run sshd in the
//! foreground behind [`Init`] and the supervisor until a signal, the finish
//! file, an OOM kill or sshd's own exit ends it.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tracing::{error, info, warn};

use crate::client::{self, Installed};
use crate::errors::io_reason;
use crate::files;
use crate::init::{self, Init};
use crate::keys;
use crate::log;
use crate::oom::{OomWatch, OOM_EXIT};
use crate::sshd::{self, ServerConfig};
use crate::supervise::{
    self, Action, AfterStop, Ended, Ending, Event, Look, Policy, Supervisor, Watcher,
};
use crate::user::{self, User};

/// The worker's settings: the pod contract's arguments, from flags or
/// environment (see cli.rs).
pub type Options = mpijob_api::contract::WorkerArgs;

/// Files in the state directory.
struct State {
    dir: PathBuf,
}

impl State {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Run the worker; returns the exit code.
pub fn run(opts: Options) -> Result<i32> {
    // First, so that no signal is lost and no orphan escapes.
    let mut init = Init::new()?;
    let user = User::current();
    for peer in &opts.peers {
        if let Err(e) = client::check_peer(peer) {
            bail!("--peers: {e}; give host patterns separated by commas, like *.job.ns.svc");
        }
    }
    let sshd_path = sshd::check_executable(&opts.sshd_path)?;
    let mounted = keys::load(&opts.ssh_dir)?;
    sshd::check_port(opts.port, opts.listen)?;

    let dir = opts.state_dir.clone().unwrap_or_else(|| {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        user::default_state_dir(&user, xdg.as_deref())
    });
    user::prepare_state_dir(&dir, &user)?;
    let state = State { dir };
    // Before sshd starts, so that the count is taken before any rank runs.
    let (oom, oom_words) = OomWatch::start(opts.oom_watch);
    info!(
        user = %user.display(),
        sshd = %sshd_path.display(),
        key = %mounted.path.display(),
        state_dir = %state.dir.display(),
        oom_watch = %oom_words,
        "worker starting"
    );
    let env = session_env(&opts);
    write_files(&state, &opts, &user, &mounted, &env.pass)?;
    let pid_file = state.path("sshd.pid");
    let _ = fs::remove_file(&pid_file);
    sshd::ensure_privsep_dir(user.is_root())?;
    let config = state.path("sshd_config");
    let (sshd_pid, log) = match start_sshd(&mut init, &sshd_path, &config) {
        Err(Start::Rejected(reason)) if sshd::set_env_unknown(&reason) => {
            warn!(
                "{} is older than OpenSSH 8.7 and has no SetEnv: commands run over ssh get sshd's \
                 default environment, not this container's, so an MPI outside /usr/bin may not \
                 be found; pass what they need with mpirun (e.g. -x PATH -x LD_LIBRARY_PATH) or \
                 use an image with a newer openssh-server",
                sshd_path.display()
            );
            write_files(&state, &opts, &user, &mounted, &[])?;
            start_sshd(&mut init, &sshd_path, &config).map_err(|e| e.into_error(&opts))?
        }
        started => started.map_err(|e| e.into_error(&opts))?,
    };
    drop(mounted);
    let client_config = state.path("ssh_config");
    let installed = install_client(&opts, &user, &client_config);

    let policy = Policy {
        stop_signals: vec![Signal::SIGTERM, Signal::SIGINT],
        grace: Some(opts.grace_period),
        // sshd exits 0 on SIGTERM; a code of its own is a failure.
        after_stop: AfterStop::FailureOnly,
    };
    let mut watcher = Sshd {
        opts: &opts,
        pid_file: &pid_file,
        log,
        oom,
    };
    let child = supervise::Child {
        pid: sshd_pid,
        group: false,
    };
    let ended = supervise::supervise(&mut init, child, policy, &mut watcher);
    watcher.log.drain();
    report(&ended);
    if let Some(installed) = &installed {
        client::uninstall(installed, &client_config);
    }
    init.stop_remaining(Duration::from_secs(1));
    Ok(ended.code)
}

/// The job key, `authorized_keys`, `sshd_config` and, with peers, the ssh
/// client files, into the state directory.
fn write_files(
    state: &State,
    opts: &Options,
    user: &User,
    mounted: &keys::MountedKey,
    set_env: &[(String, String)],
) -> Result<()> {
    let (host_key, authorized_keys, pid_file) = (
        state.path("job_key"),
        state.path("authorized_keys"),
        state.path("sshd.pid"),
    );
    files::write_private(&host_key, mounted.key.private_pem().as_bytes())?;
    files::write_private(&authorized_keys, mounted.authorized_keys.as_bytes())?;
    let config = sshd::render(&ServerConfig {
        port: opts.port,
        listen: opts.listen,
        host_key: &host_key,
        authorized_keys: &authorized_keys,
        pid_file: &pid_file,
        user: user.name.as_deref(),
        root: user.is_root(),
        extra: &opts.sshd_options,
        set_env,
    });
    files::write_private(&state.path("sshd_config"), config.as_bytes())?;
    if !opts.peers.is_empty() {
        let client_files = client::ClientFiles {
            identity: &host_key,
            known_hosts: &state.path("known_hosts"),
            config: &state.path("ssh_config"),
        };
        client::write_files(&client_files, &opts.peers, opts.port, &mounted.key)?;
    }
    Ok(())
}

/// Start sshd in the foreground, and check its config meanwhile.
///
/// `sshd -t` runs alongside the real sshd (started first), whose output
/// waits unread in its pipe until the check passes: the check costs no
/// start-up time, and when it fails the real sshd is killed before anyone
/// hears from it. The check runs at a lower priority so that it does not
/// slow the real sshd on a busy machine.
fn start_sshd(
    init: &mut Init,
    sshd_path: &Path,
    sshd_config: &Path,
) -> Result<(Pid, SshdLog), Start> {
    let mut server = init::child_command(sshd_path)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(sshd_config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Start::Failed(cannot_run(sshd_path, &e)))?;
    let sshd_pid = Pid::from_raw(server.id() as i32);
    let log = SshdLog::new(server.stderr.take());
    let mut check = init::child_command(sshd_path);
    check
        .arg("-t")
        .arg("-f")
        .arg(sshd_config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setpriority is a plain system call, safe between fork and exec.
    unsafe {
        check.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            Ok(())
        });
    }
    let checked = check.spawn().and_then(|c| init.output(c));
    let rejected = match &checked {
        Ok(out) if out.success() => None,
        Ok(out) => Some(sshd::first_error_line(&String::from_utf8_lossy(
            &out.stderr,
        ))),
        Err(e) => Some(format!("cannot run it: {}", io_reason(e))),
    };
    if let Some(reason) = rejected {
        let _ = kill(sshd_pid, Signal::SIGKILL);
        let _ = init.wait_for(sshd_pid);
        return Err(Start::Rejected(reason));
    }
    Ok((sshd_pid, log))
}

/// Why sshd did not start.
enum Start {
    /// `sshd -t` refused the config, for this reason.
    Rejected(String),
    Failed(anyhow::Error),
}

impl Start {
    fn into_error(self, opts: &Options) -> anyhow::Error {
        match self {
            Start::Failed(e) => e,
            Start::Rejected(reason) => {
                let fix = if reason.contains("host key") || reason.contains("hostkeys") {
                    "the job key must be an unencrypted private key"
                } else if opts.sshd_options.is_empty() {
                    "check that --sshd-path is OpenSSH's sshd"
                } else {
                    "fix or remove the --sshd-option values"
                };
                anyhow::anyhow!("sshd -t rejected the generated config: {reason}; {fix}")
            }
        }
    }
}

/// The agent's environment as ssh sessions get it (see
/// [`sshd::session_env`]), said in the log by name: values can be secrets.
fn session_env(opts: &Options) -> sshd::SessionEnv {
    let env = sshd::session_env(std::env::vars_os());
    if sshd::sets_env(&opts.sshd_options) {
        info!("an --sshd-option sets SetEnv: this container's environment is not passed to ssh sessions");
        return sshd::SessionEnv::default();
    }
    sshd::announce(&env, "this container's");
    env
}

/// Point plain `ssh` at the peers' client config, and say how.
fn install_client(opts: &Options, user: &User, client_config: &Path) -> Option<Installed> {
    if opts.peers.is_empty() {
        info!("no --peers given: plain ssh to the job's peers is not configured");
        return None;
    }
    let installed = client::install(user.home.as_deref(), user.is_root(), client_config);
    match &installed {
        Installed::Include(file) | Installed::DropIn(file) => info!(
            config = %file.display(),
            "plain ssh to {} uses the job key, port {} and pinned host keys",
            opts.peers.join(","),
            opts.port
        ),
        Installed::Existing(file) => info!(
            config = %file.display(),
            "cannot add to the ssh client config: relying on the existing one (e.g. the job Secret's)"
        ),
        Installed::Nothing(why) => warn!(
            "plain ssh to the peers is not configured ({why}); use ssh -F {}",
            client_config.display()
        ),
    }
    Some(installed)
}

/// How sshd ended, in the log and the termination message.
fn report(ended: &Ended) {
    let how = match ended.status {
        WaitStatus::Exited(_, c) => format!("exited with code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("was killed by {s}"),
        _ => "ended".into(),
    };
    let code = ended.code;
    if let Some(Ending::Failed { why, .. }) = &ended.ending {
        info!(exit_code = code, "sshd {how}");
        log::termination_message(&format!("worker: {why}; exit code {code}"));
        return;
    }
    if !ended.ready && ended.stop.is_none() && ended.ending.is_none() {
        error!("sshd {how} before accepting connections; see its messages above");
    } else {
        info!(exit_code = code, "sshd {how}");
    }
    log::termination_message(&format!("worker: sshd {how}; exit code {code}"));
}

/// The worker's senses around sshd: its log, its pid file (ready), the
/// finish file and the OOM watch.
struct Sshd<'a> {
    opts: &'a Options,
    pid_file: &'a Path,
    log: SshdLog,
    oom: Option<OomWatch>,
}

impl Watcher for Sshd<'_> {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.log.fd()
    }

    /// Fast until ready, then only as often as the finish file and the OOM
    /// watch need.
    fn patience(&self, state: &Supervisor) -> Duration {
        let mut timeout = Duration::from_millis(if state.ready() { 250 } else { 5 });
        if let Some(oom) = &self.oom {
            timeout = timeout.min(oom.due().saturating_duration_since(Instant::now()));
        }
        timeout
    }

    fn look(&mut self, look: Look<'_>) -> Vec<Event> {
        if look.readable {
            self.log.pump();
        }
        // Once the worker is stopping anyway, an OOM kill changes nothing.
        if look.state.stopping() {
            self.oom = None;
        }
        if let Some(found) = self
            .oom
            .as_mut()
            .and_then(|w| w.check(look.now, look.exited))
        {
            if look.exited {
                error!("{}: exit code {OOM_EXIT}", found.summary);
            } else {
                error!("{}: stopping sshd, exit code {OOM_EXIT}", found.summary);
            }
            self.oom = None;
            return vec![Event::Failed {
                code: OOM_EXIT,
                why: found.summary,
            }];
        }
        if look.exited {
            return Vec::new();
        }
        let mut events = Vec::new();
        if !look.state.ready() && non_empty(self.pid_file) {
            events.push(Event::Ready);
        }
        if !look.state.stopping() && non_empty(&self.opts.finish_file) {
            info!(
                file = %self.opts.finish_file.display(),
                "the job is finished: stopping sshd"
            );
            events.push(Event::Finished);
        }
        events
    }

    fn tell(&mut self, action: &Action) {
        supervise::tell_common("sshd", action);
        if let Action::Ready = action {
            let on = self
                .opts
                .listen
                .map_or_else(|| "all addresses".to_string(), |a| a.to_string());
            info!(port = self.opts.port, listen = %on, "ready: sshd accepts connections");
        }
    }
}

fn non_empty(file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|m| m.len() > 0)
}

/// sshd's stderr, passed on line by line through the agent's log, so that
/// it has the agent's format (JSON in a cluster).
struct SshdLog {
    pipe: Option<ChildStderr>,
    partial: Vec<u8>,
}

impl SshdLog {
    fn new(pipe: Option<ChildStderr>) -> SshdLog {
        if let Some(p) = &pipe {
            if let Ok(flags) = fcntl(p, FcntlArg::F_GETFL) {
                let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
                let _ = fcntl(p, FcntlArg::F_SETFL(flags));
            }
        }
        SshdLog {
            pipe,
            partial: Vec::new(),
        }
    }

    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pipe.as_ref().map(|p| p.as_fd())
    }

    /// Read what is there; close the pipe at end of file.
    fn pump(&mut self) {
        let Some(pipe) = &mut self.pipe else { return };
        let mut buf = [0u8; 8192];
        let eof = loop {
            match pipe.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        if eof {
            self.pipe = None;
        }
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            emit(&line);
        }
        // A runaway line without a newline is shown in pieces.
        if self.partial.len() > 4096 {
            let line = std::mem::take(&mut self.partial);
            emit(&line);
        }
    }

    /// Show whatever is left at exit. Adopted sessions may hold the pipe
    /// open, so this does not wait for end of file.
    fn drain(&mut self) {
        self.pump();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            emit(&line);
        }
    }
}

fn cannot_run(sshd: &Path, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "--sshd-path {}: cannot run it: {}; point --sshd-path at OpenSSH's sshd",
        sshd.display(),
        io_reason(e)
    )
}

fn emit(line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    if !line.is_empty() {
        info!("sshd: {line}");
    }
}
