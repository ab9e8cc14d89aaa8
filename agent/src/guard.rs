//! `mpijob-agent guard -- COMMAND…`: run a container's own command (a
//! Kubeflow worker's sshd) under the agent, for the one thing Kubernetes
//! cannot see by itself: an MPI rank, a child of an sshd session, killed by
//! the kernel's OOM killer. sshd lives on, so the container would keep
//! running and the job would fail later, through the launcher, with no word
//! of the worker or its memory. The guard watches the `oom_kill` counter
//! of its memory cgroup, and on a kill stops the command and exits 137, so
//! that the worker's container ends `OOMKilled` with exit code 137.
//!
//! When the command is OpenSSH's sshd (8.7 or later), the guard also hands
//! it this container's environment for its sessions (a `SetEnv` line in a
//! private copy of its config, see [`sshd::session_env`]): the ranks that sshd starts then find an MPI or
//! a Python that the image put on `PATH` outside /usr/bin, which sshd's
//! default environment would lose (mpi-operator #488).
//!
//! Otherwise the guard is transparent: the command keeps its own stdout
//! and stderr, every signal is passed on, and the guard's exit code is the
//! command's (see [`supervise::exit_code`]). Kubernetes keeps its own
//! grace period, so the guard never sends SIGKILL after a stop signal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use tracing::{error, info};

use mpijob_api::contract::GuardArgs;

use crate::errors::io_reason;
use crate::files;
use crate::init::{self, Init};
use crate::log;
use crate::oom::{OomWatch, OOM_EXIT};
use crate::sshd;
use crate::supervise::{
    self, Action, AfterStop, Ended, Ending, Event, Look, Policy, Supervisor, Watcher,
};
use crate::user::{self, User};

/// How often the guard looks at the OOM counter at most, between reads
/// the watch itself schedules.
const PATIENCE: Duration = Duration::from_millis(250);

/// Run `command` under the guard; returns the exit code.
pub fn run(args: GuardArgs, oom_watch: bool) -> Result<i32> {
    // First, so that no signal is lost and no orphan escapes.
    let mut init = Init::new()?;
    // The command as given is what the log shows: the environment added
    // for sshd's sessions may hold secrets.
    let given = args.command.clone();
    let command = with_session_env(&mut init, args.command);
    let Some((program, args)) = command.split_first() else {
        bail!(
            "no command to run: give it after --, like `mpijob-agent guard -- /usr/sbin/sshd -De`"
        );
    };
    // Before the command starts, so that the count is taken before any
    // rank runs.
    let (oom, oom_words) = OomWatch::start(oom_watch);
    info!(command = ?given, oom_watch = %oom_words, "guard starting");
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

/// `command`, with its sshd config swapped for a private copy that starts
/// with a `SetEnv` line, when it is an sshd that knows SetEnv and neither
/// its command line nor its config sets one. The copy, not the command
/// line, carries the values: a command line is visible to every process
/// that can list this one.
fn with_session_env(init: &mut Init, command: Vec<String>) -> Vec<String> {
    let Some(program) = command.first() else {
        return command;
    };
    let is_sshd = Path::new(program).file_name().is_some_and(|n| n == "sshd");
    let on_command_line = command
        .windows(2)
        .any(|w| w[0] == "-o" && sshd::sets_env(std::slice::from_ref(&w[1])));
    if !is_sshd {
        return command;
    }
    if on_command_line {
        info!("{program} is given SetEnv on its command line: ssh sessions get what it says, not this container's environment");
        return command;
    }
    // `sshd -V` prints the version; an sshd too old for `-V` prints it in
    // its usage. Both on stderr.
    let asked = init::child_command(program)
        .arg("-V")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|c| init.output(c));
    let version = asked
        .ok()
        .and_then(|o| sshd::openssh_version(&String::from_utf8_lossy(&o.stderr)));
    let lost = "commands run over ssh get sshd's default environment, not this container's; pass what the ranks need with mpirun (e.g. -x PATH -x LD_LIBRARY_PATH)";
    match version {
        Some(v) if v >= sshd::SET_ENV_SINCE => {}
        Some((a, b)) => {
            info!("{program} is OpenSSH {a}.{b}, which has no SetEnv: {lost}");
            return command;
        }
        None => {
            info!("{program} did not say it is OpenSSH 8.7 or later: {lost}");
            return command;
        }
    }
    let (at, config) = sshd::config_flag(&command);
    let text = match fs::read_to_string(&config) {
        Ok(text) => text,
        Err(e) => {
            info!(
                "cannot read {} to add SetEnv to it: {}; {lost}",
                config.display(),
                io_reason(&e)
            );
            return command;
        }
    };
    if sshd::sets_env(&text.lines().map(str::to_string).collect::<Vec<_>>()) {
        info!(
            "{} sets SetEnv itself: ssh sessions get what it says, not this container's environment",
            config.display()
        );
        return command;
    }
    let env = sshd::session_env(std::env::vars_os());
    let user = User::current();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    let dir = user::default_state_dir(&user, xdg.as_deref()).join("guard");
    let copy = dir.join("sshd_config");
    let written = user::prepare_state_dir(&dir, &user).and_then(|()| {
        files::write_private(
            &copy,
            sshd::with_set_env(&text, &config, &env.pass).as_bytes(),
        )
    });
    if let Err(e) = written {
        info!("cannot write {}: {e:#}; {lost}", copy.display());
        return command;
    }
    sshd::announce(&env, "this container's");
    info!(
        "{program} reads {} (a private copy of {} with a SetEnv line first)",
        copy.display(),
        config.display()
    );
    let copy = copy.display().to_string();
    let mut command = command;
    match at {
        Some(i) => command[i] = copy,
        None => command
            .splice(1..1, ["-f".to_string(), copy])
            .for_each(drop),
    }
    command
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
