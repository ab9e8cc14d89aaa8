//! What PID 1 must do, after tini and catatonit: block signals and read them
//! synchronously (a signalfd), reap every zombie, and, at exit, stop what is
//! left. When not PID 1, become a child subreaper so that orphans are still
//! ours to reap. Forwarding signals to the main child and its exit code are
//! the supervisor's (supervise.rs), which builds on this.
//!
//! This module owns every `waitpid` of the process: [`Init::reap`] is the
//! one loop that reaps any child, and [`Init::wait_for`] and
//! [`Init::output`] wait for one known child. Nothing else waits for
//! children once [`Init`] exists (not `std::process::Child::wait`, not
//! `tokio::process`).

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// The signals passed on to the child.
pub const FORWARDED: [Signal; 5] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// What one [`Init::wait`] saw.
#[derive(Debug, Default)]
pub struct Events {
    /// Forwardable signals received, in order.
    pub signals: Vec<Signal>,
    /// The extra descriptor is readable (or closed).
    pub readable: bool,
}

pub struct Init {
    signals: SignalFd,
}

/// How a short-lived child ended, and what it wrote.
#[derive(Debug)]
pub struct Output {
    pub status: WaitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        matches!(self.status, WaitStatus::Exited(_, 0))
    }
}

/// A `Command` for a child of the init loop: the signals [`Init`] blocks
/// are unblocked again between fork and exec, or the child would never see
/// the SIGTERM the agent forwards to it. The child also gets SIGKILL when
/// the agent dies (its parent-death signal), so that no child outlives an
/// agent that was killed outright: sshd, mpirun, local mode's agents. The
/// signal comes when the *thread* that spawned the child ends, so spawn
/// from a thread that outlives the child (local mode's spawners do).
pub fn child_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(program);
    let parent = nix::unistd::getpid();
    // SAFETY: sigprocmask, prctl and getppid are async-signal-safe, as
    // pre_exec requires.
    unsafe {
        command.pre_exec(move || {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The agent died before the signal was armed: go with it.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the agent that started this is gone"));
            }
            Ok(())
        });
    }
    command
}

impl Init {
    /// Block the forwarded signals and SIGCHLD, read them from a signalfd,
    /// and become a subreaper unless PID 1. Call first, before any child
    /// exists. A blocked mask survives fork and exec, so every child must be
    /// started through [`child_command`], which unblocks them again.
    pub fn new() -> Result<Init> {
        let mut mask = SigSet::empty();
        for sig in FORWARDED {
            mask.add(sig);
        }
        mask.add(Signal::SIGCHLD);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .context("blocking signals")?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("creating a signalfd")?;
        if !is_pid1() {
            nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
        }
        Ok(Init { signals })
    }

    /// Wait up to `timeout` for a signal or for `extra` to become readable.
    pub fn wait(&mut self, extra: Option<BorrowedFd<'_>>, timeout: Duration) -> Events {
        let mut events = Events::default();
        let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = extra {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => return events,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("poll failed: {e}");
                std::thread::sleep(timeout);
                return events;
            }
        }
        events.readable = fds
            .get(1)
            .and_then(|fd| fd.revents())
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) | Err(_) => {}
                Ok(sig) => events.signals.push(sig),
            }
        }
        events
    }

    /// Reap every child that has exited, with how it ended. Orphans are
    /// among them: the caller keeps what it knows and drops the rest.
    pub fn reap(&mut self) -> Vec<(Pid, WaitStatus)> {
        let mut reaped = Vec::new();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        reaped.push((pid, status));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!("waitpid failed: {e}");
                    return reaped;
                }
            }
        }
    }

    /// Block until the child `pid` has ended. Other children stay for
    /// [`Init::reap`]; pending signals stay in the signalfd.
    pub fn wait_for(&mut self, pid: Pid) -> std::io::Result<WaitStatus> {
        loop {
            match waitpid(pid, None) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Ok(status)
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// [`Init::wait_for`] without blocking: how `pid` ended, if it has.
    #[cfg_attr(not(feature = "local"), allow(dead_code))] // local mode's
    pub fn try_wait(&mut self, pid: Pid) -> Option<WaitStatus> {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => Some(status),
            _ => None,
        }
    }

    /// Read a short-lived child's output to the end, then wait for it: what
    /// `Child::wait_with_output` does, with the wait done here. Write its
    /// stdin, if piped, before.
    pub fn output(&mut self, mut child: Child) -> std::io::Result<Output> {
        drop(child.stdin.take());
        let stdout = child.stdout.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        });
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_end(&mut stderr);
        }
        let stdout = stdout
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        let status = self.wait_for(Pid::from_raw(child.id() as i32))?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// At exit: SIGTERM every remaining child (orphans and sessions we
    /// adopted), give them `patience`, then SIGKILL the rest; reap them all.
    /// As PID 1 the kernel would kill them anyway, as a subreaper nobody
    /// else would.
    pub fn stop_remaining(&mut self, patience: Duration) {
        let me = Pid::this();
        let deadline = std::time::Instant::now() + patience;
        let mut termed = HashSet::new();
        let mut killed = HashSet::new();
        loop {
            let _ = self.reap();
            let children = children_of(me.as_raw());
            let now = std::time::Instant::now();
            if children.is_empty() || now >= deadline + Duration::from_secs(1) {
                return;
            }
            let late = now >= deadline;
            for pid in children {
                let (sig, sent) = if late {
                    (Signal::SIGKILL, &mut killed)
                } else {
                    (Signal::SIGTERM, &mut termed)
                };
                if sent.insert(pid) {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
            }
            self.wait(None, Duration::from_millis(20));
        }
    }
}

pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Pids whose parent is `parent`, from /proc.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|(_, ppid)| ppid == parent)
        })
        .collect()
}

/// The state letter and parent pid from a `/proc/<pid>/stat` line. The
/// command name may contain spaces and parentheses, so parse from the last
/// `)`.
pub fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_awkward_names() {
        assert_eq!(
            parse_stat("123 (sshd) S 1 123 123 0 -1 4194560"),
            Some(('S', 1))
        );
        assert_eq!(parse_stat("77 (a) b (c)) Z 12 77 77 0 -1"), Some(('Z', 12)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_its_own_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let children = children_of(std::process::id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(children.contains(&(child.id() as i32)));
    }
}
