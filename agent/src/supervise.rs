//! The one supervisor of a role's main child: sshd on a worker, mpirun on
//! the launcher, the launcher agent in local mode.
//!
//! [`Supervisor`] is the state, and [`Supervisor::on`] its only step: an
//! [`Event`] in, [`Action`]s out, with no processes, clocks or files, so
//! that every step is tested as plain data. [`supervise`] is the loop
//! that feeds it: signals from [`Init`], children from [`Init::reap`] (the
//! one reaper), and whatever the role's [`Watcher`] sees (a finish file, an
//! OOM kill, a worker that died).
//!
//! One exit-code rule, [`exit_code`], ends every role. Its one input that
//! differs by role is [`AfterStop`]: what the child's own code still says
//! once the agent has passed it a stop signal.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::init::Init;

/// How long a child gets after the agent stops it for a failure (an OOM
/// kill), at most: the job has failed, there is nothing left to wait for.
pub const FAILURE_GRACE: Duration = Duration::from_secs(1);

/// What the child's exit code still says after the agent passed it a stop
/// signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStop {
    /// Nothing: the code is 128 + the signal. mpirun's code after a signal
    /// is whatever its ranks' ends made of it.
    Signal,
    /// Only a failure: sshd exits 0 on SIGTERM, which reads as 128 + the
    /// signal, while a non-zero code of its own stands.
    FailureOnly,
    /// Everything: the child's code stands as it is: the guard's command,
    /// passed through, or an agent that already turned the signal into its
    /// code (local mode's launcher).
    Everything,
}

/// The parts of supervision that differ by role.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The signals that stop the child; every signal is passed on, but
    /// these also start the grace period and decide the exit code.
    pub stop_signals: Vec<Signal>,
    /// How long the child gets after a stop before SIGKILL; `None`: never
    /// SIGKILL (the child keeps its own clock).
    pub grace: Option<Duration>,
    pub after_stop: AfterStop,
}

/// Why the agent ended the child itself, other than for a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The job is over (the worker's finish file): a success.
    Finished,
    /// Something outside the child failed: this code and why.
    Failed { code: i32, why: String },
}

/// What the supervisor hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The agent received this signal.
    Signal(Signal),
    /// The child is ready (sshd wrote its pid file).
    Ready,
    /// The job is over: stop the child, and succeed.
    Finished,
    /// Stop the child and fail with this code.
    Failed { code: i32, why: String },
    /// Time passed.
    Tick,
    /// The child ended.
    Exited(WaitStatus),
}

/// What the supervisor wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A stop signal arrived, the first: the child is being stopped.
    Stopping(Signal),
    /// Pass this signal on to the child.
    Forward(Signal),
    /// SIGTERM to the child.
    Terminate,
    /// SIGKILL to the child: it outlived this grace period.
    Kill { grace: Duration },
    /// The child became ready.
    Ready,
    /// The child ended; the agent ends with this.
    Exit(Ended),
}

/// How the child ended, and the agent's exit code for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub code: i32,
    pub status: WaitStatus,
    /// The stop signal the agent received and passed on.
    pub stop: Option<Signal>,
    pub ending: Option<Ending>,
    /// Whether the child had said it was ready.
    pub ready: bool,
}

/// The supervisor's state.
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: Policy,
    ready: bool,
    stop: Option<Signal>,
    ending: Option<Ending>,
    phase: Phase,
}

/// Where the child is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Asked to stop; SIGKILL at `at`, for a grace period of `grace`.
    Stopping {
        kill: Option<(Instant, Duration)>,
    },
    Killed,
    Exited,
}

impl Supervisor {
    pub fn new(policy: Policy) -> Supervisor {
        Supervisor {
            policy,
            ready: false,
            stop: None,
            ending: None,
            phase: Phase::Running,
        }
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Stopping already, by a signal, the job's end or a failure: from now
    /// on, a failure or the job's end changes nothing.
    pub fn stopping(&self) -> bool {
        self.stop.is_some() || self.ending.is_some()
    }

    /// When the supervisor must look again: SIGKILL is due.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Stopping {
                kill: Some((at, _)),
            } => Some(at),
            _ => None,
        }
    }

    /// One step: `event`, heard at `now`, and what to do about it.
    pub fn on(&mut self, now: Instant, event: Event) -> Vec<Action> {
        if self.phase == Phase::Exited {
            return Vec::new();
        }
        match event {
            Event::Signal(sig) => {
                let mut actions = Vec::new();
                if self.policy.stop_signals.contains(&sig) {
                    if self.stop.is_none() {
                        self.stop = Some(sig);
                        actions.push(Action::Stopping(sig));
                    }
                    self.start_grace(now, self.policy.grace);
                }
                actions.push(Action::Forward(sig));
                actions
            }
            Event::Ready if !self.ready => {
                self.ready = true;
                vec![Action::Ready]
            }
            Event::Ready => Vec::new(),
            Event::Finished | Event::Failed { .. } if self.stopping() => Vec::new(),
            Event::Finished => {
                self.ending = Some(Ending::Finished);
                self.start_grace(now, self.policy.grace);
                vec![Action::Terminate]
            }
            Event::Failed { code, why } => {
                self.ending = Some(Ending::Failed { code, why });
                let grace = self.policy.grace.map(|g| g.min(FAILURE_GRACE));
                self.start_grace(now, grace);
                vec![Action::Terminate]
            }
            Event::Tick => match self.phase {
                Phase::Stopping {
                    kill: Some((at, grace)),
                } if now >= at => {
                    self.phase = Phase::Killed;
                    vec![Action::Kill { grace }]
                }
                _ => Vec::new(),
            },
            Event::Exited(status) => {
                self.phase = Phase::Exited;
                let code = exit_code(
                    status,
                    self.stop,
                    self.ending.as_ref(),
                    self.policy.after_stop,
                );
                vec![Action::Exit(Ended {
                    code,
                    status,
                    stop: self.stop,
                    ending: self.ending.clone(),
                    ready: self.ready,
                })]
            }
        }
    }

    /// The first stop starts the clock; later ones leave it.
    fn start_grace(&mut self, now: Instant, grace: Option<Duration>) {
        if self.phase == Phase::Running {
            self.phase = Phase::Stopping {
                kill: grace.map(|g| (now + g, g)),
            };
        }
    }
}

/// The agent's exit code, the one rule for every role:
/// - a failure the agent saw outside the child (an OOM kill, a dead
///   worker) gives its own code;
/// - a stop signal the agent passed on gives 128 + the signal, unless the
///   child's own code still counts after it (see [`AfterStop`]);
/// - the job's end (the finish file) is a success;
/// - otherwise the child's code, or 128 + the signal that killed it.
pub fn exit_code(
    status: WaitStatus,
    stop: Option<Signal>,
    ending: Option<&Ending>,
    after_stop: AfterStop,
) -> i32 {
    let child = child_code(status);
    match (ending, stop) {
        (Some(Ending::Failed { code, .. }), _) => *code,
        (_, Some(sig)) => match after_stop {
            AfterStop::Signal => 128 + sig as i32,
            AfterStop::FailureOnly if child == 0 => 128 + sig as i32,
            AfterStop::FailureOnly | AfterStop::Everything => child,
        },
        (Some(Ending::Finished), None) => 0,
        (None, None) => child,
    }
}

/// A child's own code: its exit code, or 128 + the signal that killed it.
pub fn child_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 1,
    }
}

/// The supervised child.
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub pid: Pid,
    /// Pass signals to its whole process group (mpirun and its ssh
    /// clients, as a terminal's Ctrl-C would reach them).
    pub group: bool,
}

/// What one round of the loop saw, for the [`Watcher`].
pub struct Look<'a> {
    pub now: Instant,
    pub state: &'a Supervisor,
    /// The watcher's descriptor is readable.
    pub readable: bool,
    /// The child ended in this round (it is reaped already).
    pub exited: bool,
    /// Other children that ended in this round: the role's other
    /// processes, or orphans.
    #[cfg_attr(not(feature = "local"), allow(dead_code))] // local mode's
    pub reaped: &'a [(Pid, WaitStatus)],
}

/// What a role adds to the loop: its own senses, and its words.
pub trait Watcher {
    /// A descriptor that wakes the loop when readable.
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// How long the loop may sleep before the next look.
    fn patience(&self, state: &Supervisor) -> Duration;

    /// Look around, once a round; events for the supervisor.
    fn look(&mut self, look: Look<'_>) -> Vec<Event>;

    /// Say what the supervisor does, before it is done.
    fn tell(&mut self, action: &Action);
}

/// What every role says as the supervisor passes a signal on to `child`
/// (a program's name) or kills it.
pub fn tell_common(child: &str, action: &Action) {
    match action {
        Action::Forward(sig) => tracing::info!("received {sig}: passing it to {child}"),
        Action::Kill { grace } => tracing::warn!(
            "{child} still runs {} after the signal: sending SIGKILL",
            mpijob_api::duration::format(*grace)
        ),
        _ => {}
    }
}

/// Supervise `child` until it ends; the loop owns every `waitpid` meanwhile.
pub fn supervise(
    init: &mut Init,
    child: Child,
    policy: Policy,
    watcher: &mut impl Watcher,
) -> Ended {
    let mut state = Supervisor::new(policy);
    loop {
        let mut timeout = watcher.patience(&state);
        if let Some(at) = state.deadline() {
            timeout = timeout.min(at.saturating_duration_since(Instant::now()));
        }
        let woke = init.wait(watcher.fd(), timeout);
        let now = Instant::now();
        for sig in woke.signals {
            let actions = state.on(now, Event::Signal(sig));
            act(child, false, actions, watcher);
        }
        let mut reaped = init.reap();
        let status = reaped
            .iter()
            .position(|(pid, _)| *pid == child.pid)
            .map(|i| reaped.remove(i).1);
        let events = watcher.look(Look {
            now,
            state: &state,
            readable: woke.readable,
            exited: status.is_some(),
            reaped: &reaped,
        });
        for event in events {
            let actions = state.on(now, event);
            act(child, status.is_some(), actions, watcher);
        }
        let last = status.map_or(Event::Tick, Event::Exited);
        if let Some(ended) = act(child, status.is_some(), state.on(now, last), watcher) {
            return ended;
        }
    }
}

/// Do what the supervisor wants, and return how the child ended once it
/// has. No signal goes to a child already reaped: its pid may belong to
/// another process by now.
fn act(
    child: Child,
    reaped: bool,
    actions: Vec<Action>,
    watcher: &mut impl Watcher,
) -> Option<Ended> {
    for action in actions {
        watcher.tell(&action);
        let (target, sig) = match action {
            Action::Exit(ended) => return Some(ended),
            Action::Stopping(_) | Action::Ready => continue,
            _ if reaped => continue,
            Action::Forward(sig) if child.group => (Pid::from_raw(-child.pid.as_raw()), sig),
            Action::Forward(sig) => (child.pid, sig),
            Action::Terminate => (child.pid, Signal::SIGTERM),
            Action::Kill { .. } => (child.pid, Signal::SIGKILL),
        };
        let _ = kill(target, sig);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    fn pid() -> Pid {
        Pid::from_raw(42)
    }

    fn exited(code: i32) -> WaitStatus {
        WaitStatus::Exited(pid(), code)
    }

    fn killed(sig: Signal) -> WaitStatus {
        WaitStatus::Signaled(pid(), sig, false)
    }

    fn worker() -> Supervisor {
        Supervisor::new(Policy {
            stop_signals: vec![Signal::SIGTERM, Signal::SIGINT],
            grace: Some(GRACE),
            after_stop: AfterStop::FailureOnly,
        })
    }

    fn launcher() -> Supervisor {
        Supervisor::new(Policy {
            stop_signals: vec![Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP],
            grace: Some(GRACE),
            after_stop: AfterStop::Signal,
        })
    }

    /// Local mode: the launcher keeps its own clock and its own code.
    fn local() -> Supervisor {
        Supervisor::new(Policy {
            stop_signals: vec![Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP],
            grace: None,
            after_stop: AfterStop::Everything,
        })
    }

    fn ended_of(actions: Vec<Action>) -> Ended {
        match actions.as_slice() {
            [Action::Exit(ended)] => ended.clone(),
            other => panic!("no exit: {other:?}"),
        }
    }

    fn code_of(actions: Vec<Action>) -> i32 {
        ended_of(actions).code
    }

    #[test]
    fn one_rule_for_every_exit_code() {
        use AfterStop::{Everything, FailureOnly};
        let term = Some(Signal::SIGTERM);
        let finished = Some(&Ending::Finished);
        let oom = Ending::Failed {
            code: 137,
            why: "oom".into(),
        };
        // sshd exits 0 on SIGTERM: report the SIGTERM.
        assert_eq!(exit_code(exited(0), term, None, FailureOnly), 143);
        assert_eq!(exit_code(exited(0), None, None, FailureOnly), 0);
        assert_eq!(exit_code(exited(255), None, None, FailureOnly), 255);
        assert_eq!(exit_code(exited(255), term, None, FailureOnly), 255);
        assert_eq!(
            exit_code(killed(Signal::SIGKILL), None, None, FailureOnly),
            137
        );
        assert_eq!(
            exit_code(killed(Signal::SIGKILL), term, None, FailureOnly),
            137
        );
        assert_eq!(
            exit_code(killed(Signal::SIGINT), None, None, FailureOnly),
            130
        );
        // Finished by the job: success, however sshd went.
        assert_eq!(exit_code(exited(0), None, finished, FailureOnly), 0);
        assert_eq!(exit_code(exited(255), None, finished, FailureOnly), 0);
        assert_eq!(
            exit_code(killed(Signal::SIGKILL), None, finished, FailureOnly),
            0
        );
        // A SIGTERM during the finish still reads as SIGTERM.
        assert_eq!(exit_code(exited(0), term, finished, FailureOnly), 143);
        // A failure the agent saw gives its own code.
        assert_eq!(exit_code(exited(0), None, Some(&oom), FailureOnly), 137);
        assert_eq!(exit_code(exited(0), term, Some(&oom), FailureOnly), 137);
        // mpirun: stopped means 128 + the signal, whatever it exited with.
        assert_eq!(exit_code(exited(1), term, None, AfterStop::Signal), 143);
        assert_eq!(
            exit_code(killed(Signal::SIGKILL), term, None, AfterStop::Signal),
            143
        );
        assert_eq!(exit_code(exited(3), None, None, AfterStop::Signal), 3);
        // Local mode: the launcher already says it.
        assert_eq!(exit_code(exited(130), term, None, Everything), 130);
        assert_eq!(exit_code(exited(0), term, None, Everything), 0);
    }

    #[test]
    fn sigterm_is_passed_on_and_sigkill_follows_the_grace_period() {
        let mut s = worker();
        let t0 = Instant::now();
        assert_eq!(
            s.on(t0, Event::Signal(Signal::SIGTERM)),
            [
                Action::Stopping(Signal::SIGTERM),
                Action::Forward(Signal::SIGTERM)
            ]
        );
        assert_eq!(s.deadline(), Some(t0 + GRACE));
        assert_eq!(s.on(t0 + GRACE / 2, Event::Tick), []);
        // A second SIGTERM is passed on too, and keeps the clock.
        assert_eq!(
            s.on(t0 + GRACE / 2, Event::Signal(Signal::SIGTERM)),
            [Action::Forward(Signal::SIGTERM)]
        );
        assert_eq!(s.deadline(), Some(t0 + GRACE));
        assert_eq!(
            s.on(t0 + GRACE, Event::Tick),
            [Action::Kill { grace: GRACE }]
        );
        assert_eq!(s.deadline(), None);
        assert_eq!(s.on(t0 + GRACE * 2, Event::Tick), []);
        assert_eq!(
            code_of(s.on(t0 + GRACE, Event::Exited(killed(Signal::SIGKILL)))),
            137
        );
        // Nothing after the end.
        assert_eq!(s.on(t0, Event::Signal(Signal::SIGTERM)), []);
    }

    #[test]
    fn other_signals_are_only_passed_on() {
        let mut s = worker();
        let t0 = Instant::now();
        assert_eq!(
            s.on(t0, Event::Signal(Signal::SIGHUP)),
            [Action::Forward(Signal::SIGHUP)]
        );
        assert!(!s.stopping());
        assert_eq!(s.deadline(), None);
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(0)))), 0);
        // The launcher stops on SIGHUP.
        let mut s = launcher();
        s.on(t0, Event::Signal(Signal::SIGHUP));
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(0)))), 129);
    }

    #[test]
    fn the_first_stop_signal_counts() {
        let mut s = launcher();
        let t0 = Instant::now();
        s.on(t0, Event::Signal(Signal::SIGINT));
        assert_eq!(
            s.on(t0, Event::Signal(Signal::SIGTERM)),
            [Action::Forward(Signal::SIGTERM)]
        );
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(1)))), 130);
    }

    #[test]
    fn ready_is_said_once_and_kept() {
        let mut s = worker();
        let t0 = Instant::now();
        assert_eq!(s.on(t0, Event::Ready), [Action::Ready]);
        assert_eq!(s.on(t0, Event::Ready), []);
        assert!(ended_of(s.on(t0, Event::Exited(exited(0)))).ready);
    }

    #[test]
    fn the_jobs_end_stops_the_child_and_succeeds() {
        let mut s = worker();
        let t0 = Instant::now();
        assert_eq!(s.on(t0, Event::Finished), [Action::Terminate]);
        assert_eq!(s.deadline(), Some(t0 + GRACE));
        // Once stopping, neither a second end nor a failure changes a thing.
        assert_eq!(s.on(t0, Event::Finished), []);
        let oom = Event::Failed {
            code: 137,
            why: "oom".into(),
        };
        assert_eq!(s.on(t0, oom), []);
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(255)))), 0);
    }

    #[test]
    fn a_failure_stops_the_child_within_a_second_and_keeps_its_code() {
        let mut s = worker();
        let t0 = Instant::now();
        let oom = Event::Failed {
            code: 137,
            why: "oom".into(),
        };
        assert_eq!(s.on(t0, oom), [Action::Terminate]);
        assert_eq!(s.deadline(), Some(t0 + FAILURE_GRACE));
        assert_eq!(s.on(t0, Event::Finished), []);
        // A signal after the failure is passed on, but the code stays.
        assert_eq!(
            s.on(t0, Event::Signal(Signal::SIGTERM)),
            [
                Action::Stopping(Signal::SIGTERM),
                Action::Forward(Signal::SIGTERM)
            ]
        );
        assert_eq!(s.deadline(), Some(t0 + FAILURE_GRACE));
        let ended = ended_of(s.on(t0, Event::Exited(exited(0))));
        assert_eq!(ended.code, 137);
        let oom = Ending::Failed {
            code: 137,
            why: "oom".into(),
        };
        assert_eq!(ended.ending, Some(oom));
    }

    #[test]
    fn without_a_grace_period_nothing_is_killed() {
        let mut s = local();
        let t0 = Instant::now();
        s.on(t0, Event::Signal(Signal::SIGINT));
        assert_eq!(s.deadline(), None);
        assert_eq!(s.on(t0 + GRACE * 100, Event::Tick), []);
        let failed = Event::Failed {
            code: 1,
            why: "a worker died".into(),
        };
        // Already stopping: the worker's death changes nothing.
        assert_eq!(s.on(t0, failed.clone()), []);
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(130)))), 130);
        // The launcher may have finished just before the signal reached it.
        let mut s = local();
        s.on(t0, Event::Signal(Signal::SIGTERM));
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(0)))), 0);
        let mut s = local();
        assert_eq!(s.on(t0, failed), [Action::Terminate]);
        assert_eq!(s.deadline(), None);
        assert_eq!(code_of(s.on(t0, Event::Exited(exited(143)))), 1);
    }
}
