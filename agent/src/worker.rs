//! `mpijob-agent worker`: install the job's keys, generate and check the
//! sshd config, point plain `ssh` at the peers, then run sshd in the
//! foreground behind [`Init`] until a signal, the finish file, or sshd's own
//! exit ends it.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use tracing::{error, info, warn};

use crate::client::{self, Installed};
use crate::errors::io_reason;
use crate::files;
use crate::init::{self, Init};
use crate::keys;
use crate::oom;
use crate::sshd::{self, ServerConfig};
use crate::user::{self, User};

/// The worker's settings, from flags or environment (see main.rs).
#[derive(Debug, Clone)]
pub struct Options {
    pub ssh_dir: PathBuf,
    pub sshd_path: PathBuf,
    pub port: u16,
    pub listen: Option<IpAddr>,
    pub state_dir: Option<PathBuf>,
    pub peers: Vec<String>,
    pub grace_period: Duration,
    pub finish_file: PathBuf,
    pub sshd_options: Vec<String>,
    /// Stop with exit code 137 when the OOM killer kills a process in the
    /// agent's memory cgroup.
    pub oom_watch: bool,
}

/// 128 + SIGKILL: what Kubernetes shows for an OOM-killed container.
const OOM_EXIT: i32 = 137;

/// How long sshd gets after an OOM kill, at most: the rank is dead and the
/// job has failed, there is nothing left to wait for.
const OOM_GRACE: Duration = Duration::from_secs(1);

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
    let key = keys::load(&opts.ssh_dir)?;
    sshd::check_port(opts.port, opts.listen)?;

    let dir = opts.state_dir.clone().unwrap_or_else(|| {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        user::default_state_dir(&user, xdg.as_deref())
    });
    user::prepare_state_dir(&dir, &user)?;
    let state = State { dir };
    // Before sshd starts, so that the count is taken before any rank runs.
    let (oom_watch, oom_words) = if opts.oom_watch {
        match oom::MemoryCgroup::find() {
            Ok((cgroup, counter)) => {
                let watch = oom::Watch::new(cgroup, counter);
                let words = watch.describe();
                (Some(watch), words)
            }
            Err(why) => (None, format!("off: {why}")),
        }
    } else {
        (None, "off: --no-oom-watch".to_string())
    };
    info!(
        user = %user.display(),
        sshd = %sshd_path.display(),
        key = %key.path.display(),
        state_dir = %state.dir.display(),
        oom_watch = %oom_words,
        "worker starting"
    );

    let (host_key, authorized_keys, pid_file, known_hosts, client_config, sshd_config) = (
        state.path("job_key"),
        state.path("authorized_keys"),
        state.path("sshd.pid"),
        state.path("known_hosts"),
        state.path("ssh_config"),
        state.path("sshd_config"),
    );
    files::write_private(&host_key, &key.private)?;
    files::write_private(&authorized_keys, key.authorized_keys.as_bytes())?;
    let config = sshd::render(&ServerConfig {
        port: opts.port,
        listen: opts.listen,
        host_key: &host_key,
        authorized_keys: &authorized_keys,
        pid_file: &pid_file,
        user: user.name.as_deref(),
        root: user.is_root(),
        extra: &opts.sshd_options,
    });
    files::write_private(&sshd_config, config.as_bytes())?;
    if !opts.peers.is_empty() {
        let files = client::ClientFiles {
            identity: &host_key,
            known_hosts: &known_hosts,
            config: &client_config,
        };
        client::write_files(&files, &opts.peers, opts.port, &key.public)?;
    }
    drop(key);
    let _ = fs::remove_file(&pid_file);
    sshd::ensure_privsep_dir(user.is_root())?;

    // `sshd -t` runs alongside the real sshd (started first), whose output
    // waits unread in its pipe until the check passes: the check costs no
    // start-up time, and when it fails the real sshd is killed before anyone
    // hears from it. The check runs at a lower priority so that it does not
    // slow the real sshd on a busy machine.
    let mut server = crate::init::child_command(&sshd_path)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&sshd_config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| cannot_run(&sshd_path, &e))?;
    let sshd_pid = Pid::from_raw(server.id() as i32);
    let mut log = SshdLog::new(server.stderr.take());
    let mut check = crate::init::child_command(&sshd_path);
    check
        .arg("-t")
        .arg("-f")
        .arg(&sshd_config)
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
    let checked = check.spawn().and_then(|c| c.wait_with_output());
    let rejected = match &checked {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(sshd::first_error_line(&String::from_utf8_lossy(
            &out.stderr,
        ))),
        Err(e) => Some(format!("cannot run it: {}", io_reason(e))),
    };
    if let Some(reason) = rejected {
        let _ = kill(sshd_pid, Signal::SIGKILL);
        let _ = waitpid(sshd_pid, None);
        let fix = if reason.contains("host key") || reason.contains("hostkeys") {
            "the job key must be an unencrypted private key"
        } else if opts.sshd_options.is_empty() {
            "check that --sshd-path is OpenSSH's sshd"
        } else {
            "fix or remove the --sshd-option values"
        };
        bail!("sshd -t rejected the generated config: {reason}; {fix}");
    }

    let installed = if opts.peers.is_empty() {
        info!("no --peers given: plain ssh to the job's peers is not configured");
        None
    } else {
        let installed = client::install(user.home.as_deref(), user.is_root(), &client_config);
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
    };

    let status = supervise(&mut init, &opts, sshd_pid, &pid_file, &mut log, oom_watch);
    log.drain();
    if let Some(installed) = &installed {
        client::uninstall(installed, &client_config);
    }
    init.stop_remaining(Duration::from_secs(1));
    Ok(status)
}

/// Run until sshd exits; returns the agent's exit code.
fn supervise(
    init: &mut Init,
    opts: &Options,
    sshd: Pid,
    pid_file: &Path,
    log: &mut SshdLog,
    mut oom_watch: Option<oom::Watch>,
) -> i32 {
    let mut ready = false;
    let mut stop: Option<Signal> = None;
    let mut finished = false;
    let mut oom_killed: Option<oom::Oom> = None;
    let mut oom_read_failed = false;
    // When sshd gets SIGKILL, and the grace period that led there.
    let mut deadline: Option<(Instant, Duration)> = None;
    let mut killed = false;
    loop {
        // Poll fast until ready, then only as often as the finish file and
        // the OOM watch need.
        let mut timeout = Duration::from_millis(if ready { 250 } else { 5 });
        let wake = deadline
            .map(|(d, _)| d)
            .into_iter()
            .chain(oom_watch.as_ref().map(oom::Watch::due));
        for at in wake {
            timeout = timeout.min(at.saturating_duration_since(Instant::now()));
        }
        let events = init.wait(log.fd(), timeout);
        for sig in events.signals {
            info!("received {sig}: passing it to sshd");
            let _ = kill(sshd, sig);
            if sig == Signal::SIGTERM || sig == Signal::SIGINT {
                stop = Some(sig);
            }
            if sig == Signal::SIGTERM {
                deadline.get_or_insert((Instant::now() + opts.grace_period, opts.grace_period));
            }
        }
        if events.readable {
            log.pump();
        }
        // Once the worker is stopping anyway, an OOM kill changes nothing.
        if stop.is_some() || finished {
            oom_watch = None;
        }
        let status = init.reap(sshd);
        if let Some(watch) = &mut oom_watch {
            // When sshd itself is gone, look once more now: the OOM killer
            // may have taken sshd.
            let now = if status.is_some() {
                watch.due()
            } else {
                Instant::now()
            };
            match watch.check(now) {
                Ok(None) => oom_read_failed = false,
                Ok(Some(oom)) if status.is_some() => {
                    error!("{}: exit code {OOM_EXIT}", oom.summary);
                    oom_killed = Some(oom);
                    oom_watch = None;
                }
                Ok(Some(oom)) => {
                    error!("{}: stopping sshd, exit code {OOM_EXIT}", oom.summary);
                    let _ = kill(sshd, Signal::SIGTERM);
                    let grace = opts.grace_period.min(OOM_GRACE);
                    deadline = Some((Instant::now() + grace, grace));
                    oom_killed = Some(oom);
                    oom_watch = None;
                }
                // Once per run of failures: it may be short of memory too.
                Err(why) if !oom_read_failed => {
                    warn!("OOM watch: {why}; trying again");
                    oom_read_failed = true;
                }
                Err(_) => {}
            }
        }
        if let Some(status) = status {
            log.drain();
            let how = match status {
                WaitStatus::Exited(_, c) => format!("exited with code {c}"),
                WaitStatus::Signaled(_, s, _) => format!("was killed by {s}"),
                _ => "ended".into(),
            };
            if let Some(oom) = oom_killed {
                info!(exit_code = OOM_EXIT, "sshd {how}");
                crate::log::termination_message(&format!(
                    "worker: {}; exit code {OOM_EXIT}",
                    oom.summary
                ));
                return OOM_EXIT;
            }
            let code = init::exit_code(status, stop, finished);
            if !ready && stop.is_none() && !finished {
                error!("sshd {how} before accepting connections; see its messages above");
            } else {
                info!(exit_code = code, "sshd {how}");
            }
            crate::log::termination_message(&format!("worker: sshd {how}; exit code {code}"));
            return code;
        }
        if !ready && fs::metadata(pid_file).is_ok_and(|m| m.len() > 0) {
            ready = true;
            let on = opts
                .listen
                .map_or_else(|| "all addresses".to_string(), |a| a.to_string());
            info!(port = opts.port, listen = %on, "ready: sshd accepts connections");
        }
        if !finished
            && stop.is_none()
            && oom_killed.is_none()
            && fs::metadata(&opts.finish_file).is_ok_and(|m| m.len() > 0)
        {
            info!(
                file = %opts.finish_file.display(),
                "the job is finished: stopping sshd"
            );
            finished = true;
            let _ = kill(sshd, Signal::SIGTERM);
            deadline.get_or_insert((Instant::now() + opts.grace_period, opts.grace_period));
        }
        if let Some((at, grace)) = deadline {
            if !killed && Instant::now() >= at {
                warn!("sshd still runs {grace:?} after SIGTERM: sending SIGKILL");
                let _ = kill(sshd, Signal::SIGKILL);
                killed = true;
            }
        }
    }
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
