//! `mpijob-agent guard -- COMMAND…`: run a container's own command (a
//! Kubeflow worker's sshd) under the agent, for the one thing Kubernetes
//! cannot see by itself: an MPI rank, a child of an sshd session, killed by
//! the kernel's OOM killer. sshd lives on, so the container would keep
//! running and the job would fail later, through the launcher, with no word
//! of the worker or its memory. The guard watches the `oom_kill` counter
//! of its memory cgroup, and on a kill stops the command and exits 137, so
//! that the worker's container ends `OOMKilled` with exit code 137.
//!
//! Otherwise the guard is transparent: the command keeps its own stdout
//! and stderr, every signal is passed on, and the guard's exit code is the
//! command's (see [`supervise::exit_code`]). Kubernetes keeps its own
//! grace period, so the guard never sends SIGKILL after a stop signal.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tracing::{error, info};

use mpijob_api::contract::GuardArgs;

use crate::init::{self, Init};
use crate::log;
use crate::oom::{OomWatch, OOM_EXIT};
use crate::supervise::{
    self, Action, AfterStop, Ended, Ending, Event, Look, Policy, Supervisor, Watcher,
};

/// How often the guard looks at the OOM counter at most, between reads
/// the watch itself schedules.
const PATIENCE: Duration = Duration::from_millis(250);

/// Run `command` under the guard; returns the exit code.
pub fn run(args: GuardArgs, oom_watch: bool) -> Result<i32> {
    // First, so that no signal is lost and no orphan escapes.
    let mut init = Init::new()?;
    let command = args.command;
    let Some((program, args)) = command.split_first() else {
        bail!(
            "no command to run: give it after --, like `mpijob-agent guard -- /usr/sbin/sshd -De`"
        );
    };
    // Before the command starts, so that the count is taken before any
    // rank runs.
    let (oom, oom_words) = OomWatch::start(oom_watch);
    info!(command = ?command, oom_watch = %oom_words, "guard starting");
    let child = init::child_command(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let child = supervise::Child {
        pid: Pid::from_raw(child.id() as i32),
        group: false,
    };
    let policy = Policy {
        stop_signals: vec![Signal::SIGTERM, Signal::SIGINT],
        grace: None,
        // Transparent: after a stop signal the command's own code stands
        // (sshd's 0 on SIGTERM), as it would without the guard.
        after_stop: AfterStop::Everything,
    };
    let mut watcher = Guard {
        program: program.clone(),
        oom,
    };
    let ended = supervise::supervise(&mut init, child, policy, &mut watcher);
    report(program, &ended);
    init.stop_remaining(Duration::from_secs(1));
    Ok(ended.code)
}

/// How the command ended, in the log and the termination message.
fn report(program: &str, ended: &Ended) {
    let code = ended.code;
    if let Some(Ending::Failed { why, .. }) = &ended.ending {
        log::termination_message(&format!("guard: {why}; exit code {code}"));
        return;
    }
    let how = match ended.status {
        WaitStatus::Exited(_, c) => format!("exited with code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("was killed by {s}"),
        _ => "ended".into(),
    };
    info!(exit_code = code, "{program} {how}");
}

/// The guard's one sense: the OOM watch.
struct Guard {
    program: String,
    oom: Option<OomWatch>,
}

impl Watcher for Guard {
    fn patience(&self, _state: &Supervisor) -> Duration {
        match &self.oom {
            Some(oom) => PATIENCE.min(oom.due().saturating_duration_since(Instant::now())),
            None => Duration::from_secs(3600),
        }
    }

    fn look(&mut self, look: Look<'_>) -> Vec<Event> {
        // Once the command is stopping anyway, an OOM kill changes nothing.
        if look.state.stopping() {
            self.oom = None;
        }
        let Some(found) = self
            .oom
            .as_mut()
            .and_then(|w| w.check(look.now, look.exited))
        else {
            return Vec::new();
        };
        if look.exited {
            error!("{}: exit code {OOM_EXIT}", found.summary);
        } else {
            error!(
                "{}: stopping {}, exit code {OOM_EXIT}",
                found.summary, self.program
            );
        }
        self.oom = None;
        vec![Event::Failed {
            code: OOM_EXIT,
            why: found.summary,
        }]
    }

    fn tell(&mut self, action: &Action) {
        supervise::tell_common(&self.program, action);
    }
}
