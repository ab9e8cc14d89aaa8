//! Status: what the job's pods say, as a pure function, and writing it only
//! when it changed.
//!
//! The rules, in order:
//! - a finished job (Succeeded or Failed) stays finished; its tasks and
//!   counts still follow the pods;
//! - the launcher's MPI container exiting 0 is `Succeeded`, non-zero is
//!   `Failed`;
//! - a worker whose MPI container ends, or any pod that fails or disappears
//!   while the job runs, is `Failed`;
//! - every pod running is `Running`; anything else is `Pending`.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mpijob_api::t9k::v1beta1::{
    Aggregate, Condition, ConditionStatus, ConditionType, ContainerPhase, ContainerStatus,
    MPIJobStatus, Phase, ReplicaPhase, ReplicaStatus, ReplicaType, Task,
};
use mpijob_api::MPIJob;

use super::build::pod::mpi_container_index;
use super::build::{roles, Role};
use crate::core::context::COMPACT_ABOVE;
use crate::core::failure::{describe, pod_failure};
use crate::core::status::Note;
use crate::gang;

/// Stable reasons.
pub mod reason {
    pub const CHILDREN_CREATED: &str = "ChildrenCreated";
    pub const NAME_CONFLICT: &str = "NameConflict";
    pub const ALL_PODS_RUNNING: &str = "AllPodsRunning";
    pub const JOB_FINISHED: &str = "JobFinished";
    pub const LAUNCHER_SUCCEEDED: &str = "LauncherSucceeded";
    pub const LAUNCHER_FAILED: &str = "LauncherFailed";
    pub const WORKER_FAILED: &str = "WorkerFailed";
    pub const POD_DELETED: &str = "PodDeleted";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const INVALID_POD_TEMPLATE: &str = "InvalidPodTemplate";
    pub const JOB_STARTED: &str = "JobStarted";
    pub const SPEC_RESTORED: &str = "SpecRestored";
    pub const PAUSED: &str = "PauseRequested";
    pub const RESUMED: &str = "Resumed";
    pub const PAUSE_IGNORED: &str = "PauseIgnored";
    pub const DEBUG_MODE: &str = "DebugMode";
    pub const DEBUG_OFF: &str = "DebugOff";
}

/// What the spec's `runMode` asks of the job now, as the reconcile found
/// it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    /// `runMode.pause` is on.
    pub pause: bool,
    /// The pods are being created again: pause was turned off, or debug
    /// mode was switched and the old pods are going.
    pub resuming: bool,
    /// `runMode.debug` is on.
    pub debug: bool,
    /// Debug mode was just switched: every pod seen now is of the run
    /// before and is being deleted, whatever it shows.
    pub replaced: bool,
}

/// What apply found that the pods cannot show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Objects with a child's name that this job does not own.
    pub conflicts: Vec<String>,
    /// Every child has been created (or already existed).
    pub all_created: bool,
    /// Something was created, by this reconcile or one just before, and
    /// is not in the caches yet: its watch event brings another reconcile,
    /// which sees it there.
    pub created_any: bool,
    /// Children the API server refused (422), with its message.
    pub rejected: Vec<String>,
    /// Edits of the spec made after the job's pods were created, ignored.
    pub edits: Vec<String>,
    /// The run mode.
    pub run: Run,
    /// The job's gang, when it has a PodGroup (or should have one).
    pub gang: Option<gang::State>,
}

/// Whether condition `type_` is True in `next` but was not in `prev`.
pub fn newly_true(prev: Option<&MPIJobStatus>, next: &MPIJobStatus, type_: ConditionType) -> bool {
    next.is_true(type_) && !prev.is_some_and(|p| p.is_true(type_))
}

/// Whether condition `type_` differs between `prev` and `next` in status,
/// reason or message.
pub fn changed(prev: Option<&MPIJobStatus>, next: &MPIJobStatus, type_: ConditionType) -> bool {
    let key = |c: &Condition| (c.status, c.reason.clone(), c.message.clone());
    prev.and_then(|p| p.condition(type_)).map(key) != next.condition(type_).map(key)
}

/// The message of condition `type_`, or nothing.
pub fn condition_message(s: &MPIJobStatus, type_: ConditionType) -> String {
    s.condition(type_)
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

/// The events a status change calls for, in the order they are told: the
/// spec edit ignored, the gang's state (once per change of reason, not per
/// pod placed), the name clashes when the Created condition changes, the
/// new phase, then the run modes' conditions when they change.
pub fn notes(prev: Option<&MPIJobStatus>, next: &MPIJobStatus, conflicts: &[String]) -> Vec<Note> {
    let mut out = Vec::new();
    if newly_true(prev, next, ConditionType::SpecChangeIgnored) {
        out.push(Note::warning(
            reason::JOB_STARTED,
            condition_message(next, ConditionType::SpecChangeIgnored),
        ));
    }
    let gang_reason = |s: Option<&MPIJobStatus>| {
        s.and_then(|s| s.condition(ConditionType::Scheduled))
            .and_then(|c| c.reason.clone())
    };
    if let Some(why) = gang_reason(Some(next)).filter(|r| gang_reason(prev).as_ref() != Some(r)) {
        let message = condition_message(next, ConditionType::Scheduled);
        out.push(if why == gang::reason::CRD_MISSING {
            Note::warning(&why, message)
        } else {
            Note::normal(&why, message)
        });
    }
    if changed(prev, next, ConditionType::Created) {
        out.extend(
            conflicts
                .iter()
                .map(|c| Note::warning(reason::NAME_CONFLICT, c.as_str())),
        );
    }
    let before = prev.and_then(|s| s.phase);
    if let Some(phase) = next.phase.filter(|p| Some(*p) != before) {
        out.push(phase_note(phase, next));
    }
    for type_ in [ConditionType::Paused, ConditionType::Debug] {
        let Some(c) = next.condition(type_).filter(|_| changed(prev, next, type_)) else {
            continue;
        };
        let why = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        out.push(if why == reason::PAUSE_IGNORED {
            Note::warning(&why, message)
        } else {
            Note::normal(&why, message)
        });
    }
    out
}

/// The event for entering `phase`: a failure carries its condition's
/// reason (e.g. `WorkerFailed`) and message.
fn phase_note(phase: Phase, s: &MPIJobStatus) -> Note {
    let message = |t| condition_message(s, t);
    match phase {
        Phase::Failed => {
            let why = s
                .condition(ConditionType::Failed)
                .and_then(|c| c.reason.clone())
                .unwrap_or_else(|| "Failed".into());
            Note::warning(&why, message(ConditionType::Failed))
        }
        Phase::Succeeded => Note::normal("Succeeded", message(ConditionType::Succeeded)),
        Phase::Running => Note::normal("Running", message(ConditionType::Running)),
        Phase::Pending => Note::normal("Pending", "waiting for the pods to run"),
        Phase::Paused => Note::normal("Paused", message(ConditionType::Paused)),
        Phase::Resuming => Note::normal("Resuming", "creating the pods again"),
        other => Note::normal(&format!("{other:?}"), format!("{other:?}")),
    }
}

/// The status of an invalid job: `Failed`, with every validation message.
pub fn invalid(
    prev: Option<&MPIJobStatus>,
    generation: Option<i64>,
    messages: &[String],
    now: &Time,
) -> MPIJobStatus {
    let mut s = prev.cloned().unwrap_or_default();
    if s.phase.is_some_and(Phase::is_finished) {
        return s;
    }
    s.phase = Some(Phase::Failed);
    s.observed_generation = generation;
    s.start_time.get_or_insert_with(|| now.clone());
    s.completion_time.get_or_insert_with(|| now.clone());
    set_condition(
        &mut s.conditions,
        ConditionType::Failed,
        true,
        reason::INVALID_SPEC,
        &messages.join("; "),
        now,
    );
    s
}

/// The status the pods and `observed` call for. `pods` are the job's own
/// pods; `prev` is the status last written.
pub fn compute(
    job: &MPIJob,
    pods: &[&Pod],
    prev: Option<&MPIJobStatus>,
    observed: &Observed,
    now: &Time,
) -> MPIJobStatus {
    let prev = prev.cloned().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let expected = roles(u32::try_from(job.spec.worker().replicas).unwrap_or(0));
    let run = observed.run;
    // Pods going while the job pauses or resumes are of the run before:
    // their ends (a SIGTERM'd mpirun) are not this run's.
    let past_going = run.pause || run.resuming;
    // By name, so that a reconcile costs time linear in the pods.
    let by_name: HashMap<&str, &Pod> = pods
        .iter()
        .copied()
        .filter(|p| !(run.replaced || past_going && p.metadata.deletion_timestamp.is_some()))
        .filter_map(|p| Some((p.metadata.name.as_deref()?, p)))
        .collect();
    let find = |role: Role| by_name.get(role.pod_name(name).as_str()).copied();
    let (tasks, aggregate) = tasks(name, &expected, &find, &prev);
    let mut s = MPIJobStatus {
        phase: prev.phase,
        conditions: prev.conditions.clone(),
        aggregate: Some(aggregate),
        tasks,
        start_time: prev.start_time.clone().or_else(|| Some(now.clone())),
        completion_time: prev.completion_time.clone(),
        observed_generation: job.metadata.generation,
    };
    note_children(&mut s, observed, now);
    note_edits(&mut s, &observed.edits, now);

    if prev.phase.is_some_and(Phase::is_finished) {
        name_oom_killed_workers(&mut s, name, &expected, &find);
        if run.pause {
            let phase = prev.phase.map(|p| format!("{p:?}")).unwrap_or_default();
            set_condition(
                &mut s.conditions,
                ConditionType::Paused,
                false,
                reason::PAUSE_IGNORED,
                &format!("runMode.pause is on, but the job had already {phase}: a finished job is not paused and nothing was deleted"),
                now,
            );
        }
        return s;
    }
    let verdict = if !observed.rejected.is_empty() {
        Verdict::Rejected(observed.rejected.join("; "))
    } else if run.debug && prev.phase == Some(Phase::Running) {
        // A debug job that ran keeps running whatever its pods do, until
        // debug is turned off.
        Verdict::Running
    } else if run.debug {
        running_or_pending(&expected, &find)
    } else {
        verdict(
            name,
            &expected,
            &find,
            prev.phase == Some(Phase::Running) && !run.resuming,
        )
    };
    note_debug(&mut s, run.debug, now);
    let ends = matches!(
        verdict,
        Verdict::Succeeded | Verdict::Failed(..) | Verdict::Rejected(_)
    );
    if run.pause && !ends {
        // A job that ended before the pause took hold keeps its end.
        pause(&mut s, now);
        return s;
    }
    if run.resuming && s.is_true(ConditionType::Paused) {
        set_condition(
            &mut s.conditions,
            ConditionType::Paused,
            false,
            reason::RESUMED,
            "runMode.pause was turned off: the pods are created again, with runMode.pause.resumeSpecs",
            now,
        );
    }
    let verdict = match verdict {
        Verdict::Pending if run.resuming => Verdict::Resuming,
        v => v,
    };
    apply_verdict(&mut s, verdict, now);
    if s.phase == Some(Phase::Failed) {
        name_oom_killed_workers(&mut s, name, &expected, &find);
    }
    if let Some(state) = observed
        .gang
        .as_ref()
        .filter(|_| !s.phase.is_some_and(Phase::is_finished))
    {
        let live: Vec<&Pod> = expected.iter().filter_map(|r| find(*r)).collect();
        if let Some((placed, why, message)) = gang::condition(state, &live) {
            set_condition(
                &mut s.conditions,
                ConditionType::Scheduled,
                placed,
                why,
                &message,
                now,
            );
        }
    }
    s
}

/// One task per replica type, one entry per expected replica, and the
/// counts per phase. A pod that is not there is `Creating`, or `Deleted`
/// with what it last showed if it existed once.
fn tasks<'p>(
    job: &str,
    expected: &[Role],
    find: &dyn Fn(Role) -> Option<&'p Pod>,
    prev: &MPIJobStatus,
) -> (Vec<Task>, Aggregate) {
    let mut aggregate = Aggregate::default();
    let known: HashMap<&str, &ReplicaStatus> = prev
        .tasks
        .iter()
        .flat_map(|t| t.replicas.iter())
        .map(|r| (r.name.as_str(), r))
        .collect();
    let compact = expected.len() > COMPACT_ABOVE + 1;
    let mut tasks = [ReplicaType::Launcher, ReplicaType::Worker].map(|replica_type| Task {
        replica_index: i32::from(replica_type == ReplicaType::Worker),
        replica_type,
        replicas: Vec::new(),
    });
    for &role in expected {
        let pod_name = role.pod_name(job);
        let replica = match (find(role), known.get(pod_name.as_str())) {
            (Some(pod), _) if compact && matches!(role, Role::Worker(_)) => {
                compacted(replica_of(pod))
            }
            (Some(pod), _) => replica_of(pod),
            // It existed once: a uid, or (a compact entry) a phase.
            (None, Some(r)) if r.uid.is_some() || r.phase != ReplicaPhase::Creating => {
                ReplicaStatus {
                    phase: ReplicaPhase::Deleted,
                    ..(*r).clone()
                }
            }
            (None, _) => ReplicaStatus {
                name: pod_name,
                uid: None,
                phase: ReplicaPhase::Creating,
                containers: Vec::new(),
            },
        };
        count(&mut aggregate, replica.phase);
        let task = usize::from(role.replica_type() == ReplicaType::Worker);
        tasks[task].replicas.push(replica);
    }
    (tasks.into(), aggregate)
}

/// The `Created` condition: a name clash, or every child there.
fn note_children(s: &mut MPIJobStatus, observed: &Observed, now: &Time) {
    if !observed.conflicts.is_empty() {
        set_condition(
            &mut s.conditions,
            ConditionType::Created,
            false,
            reason::NAME_CONFLICT,
            &observed.conflicts.join("; "),
            now,
        );
    } else if observed.all_created {
        set_condition(
            &mut s.conditions,
            ConditionType::Created,
            true,
            reason::CHILDREN_CREATED,
            "the Secret, the Service and every pod exist",
            now,
        );
    }
}

/// The `SpecChangeIgnored` condition: True while the spec differs from the
/// one the job started with, False once it is back.
fn note_edits(s: &mut MPIJobStatus, edits: &[String], now: &Time) {
    if !edits.is_empty() {
        set_condition(
            &mut s.conditions,
            ConditionType::SpecChangeIgnored,
            true,
            reason::JOB_STARTED,
            &format!(
                "the spec changed after the job's pods were created; the change is ignored: {}",
                edits.join("; ")
            ),
            now,
        );
    } else if s.is_true(ConditionType::SpecChangeIgnored) {
        set_condition(
            &mut s.conditions,
            ConditionType::SpecChangeIgnored,
            false,
            reason::SPEC_RESTORED,
            "the spec is back to what the job started with",
            now,
        );
    }
}

/// A paused job: no pods, the Secret and the Service kept.
fn pause(s: &mut MPIJobStatus, now: &Time) {
    s.phase = Some(Phase::Paused);
    set_condition(
        &mut s.conditions,
        ConditionType::Paused,
        true,
        reason::PAUSED,
        "runMode.pause is on: the job's pods are deleted, its Secret and Service stay; turn pause off to resume",
        now,
    );
    if s.is_true(ConditionType::Running) {
        set_condition(
            &mut s.conditions,
            ConditionType::Running,
            false,
            reason::PAUSED,
            "the job is paused",
            now,
        );
    }
}

/// The `Debug` condition: True while debug mode is on, False once off.
fn note_debug(s: &mut MPIJobStatus, debug: bool, now: &Time) {
    if debug {
        set_condition(
            &mut s.conditions,
            ConditionType::Debug,
            true,
            reason::DEBUG_MODE,
            "runMode.debug is on: the pods run but nothing trains, and the job does not end by itself. The launcher waits with the hostfile written (unless given a command): kubectl exec into it and run the mpirun command its log prints. Turning debug off starts the job for real; deleting it ends it",
            now,
        );
    } else if s.is_true(ConditionType::Debug) {
        set_condition(
            &mut s.conditions,
            ConditionType::Debug,
            false,
            reason::DEBUG_OFF,
            "runMode.debug was turned off: the debug pods are replaced by the job's own",
            now,
        );
    }
}

/// Running once every pod runs, else Pending. In debug mode this is the
/// whole verdict: nothing ends the job.
fn running_or_pending<'p>(expected: &[Role], find: &dyn Fn(Role) -> Option<&'p Pod>) -> Verdict {
    let all_running = expected.iter().all(|&r| {
        find(r)
            .is_some_and(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    });
    if all_running {
        Verdict::Running
    } else {
        Verdict::Pending
    }
}

/// Phase, times and conditions for a verdict on a job not yet finished.
fn apply_verdict(s: &mut MPIJobStatus, verdict: Verdict, now: &Time) {
    let (phase, condition) = match verdict {
        Verdict::Pending => (Phase::Pending, None),
        Verdict::Resuming => (Phase::Resuming, None),
        Verdict::Running => (
            Phase::Running,
            Some((
                ConditionType::Running,
                reason::ALL_PODS_RUNNING,
                "the launcher and every worker are running".to_string(),
            )),
        ),
        Verdict::Succeeded => (
            Phase::Succeeded,
            Some((
                ConditionType::Succeeded,
                reason::LAUNCHER_SUCCEEDED,
                "the launcher's mpirun exited 0".to_string(),
            )),
        ),
        Verdict::Rejected(message) => (
            Phase::Failed,
            Some((ConditionType::Failed, reason::INVALID_POD_TEMPLATE, message)),
        ),
        Verdict::Failed(why, message) => {
            (Phase::Failed, Some((ConditionType::Failed, why, message)))
        }
    };
    s.phase = Some(phase);
    if let Some((type_, why, message)) = condition {
        set_condition(&mut s.conditions, type_, true, why, &message, now);
    }
    if phase.is_finished() {
        s.completion_time = Some(now.clone());
        finish_running(s, now);
    }
}

enum Verdict {
    Succeeded,
    Failed(&'static str, String),
    /// The API server refused children (422), with its messages.
    Rejected(String),
    Running,
    Pending,
    /// Pending, after a pause or a debug switch.
    Resuming,
}

fn verdict<'p>(
    job: &str,
    expected: &[Role],
    find: &dyn Fn(Role) -> Option<&'p Pod>,
    was_running: bool,
) -> Verdict {
    // The launcher decides the outcome.
    if let Some(launcher) = find(Role::Launcher) {
        let who = who(Role::Launcher, job);
        if let Some((container, t)) = mpi_termination(launcher) {
            if t.exit_code == 0 {
                return Verdict::Succeeded;
            }
            return Verdict::Failed(reason::LAUNCHER_FAILED, describe(&who, &container, t));
        }
        if let Some(msg) = pod_failure(&who, launcher) {
            return Verdict::Failed(reason::LAUNCHER_FAILED, msg);
        }
    }
    // A worker must not end while the job runs.
    for &role in expected.iter().filter(|r| matches!(r, Role::Worker(_))) {
        let who = who(role, job);
        if let Some(worker) = find(role) {
            if let Some((container, t)) = mpi_termination(worker) {
                return Verdict::Failed(reason::WORKER_FAILED, describe(&who, &container, t));
            }
            if let Some(msg) = pod_failure(&who, worker) {
                return Verdict::Failed(reason::WORKER_FAILED, msg);
            }
        }
    }
    // A pod that is gone, or going, while the job runs. (Before that, apply
    // simply creates it again.)
    if was_running {
        for &role in expected {
            let gone = find(role).is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            if gone {
                return Verdict::Failed(
                    reason::POD_DELETED,
                    format!("{} was deleted while the job was running", who(role, job)),
                );
            }
        }
    }
    running_or_pending(expected, find)
}

/// A failed job whose workers were OOM-killed names them in its Failed
/// message, also when the launcher's failure (mpirun losing the killed
/// rank) was seen first: the kernel's kill is the cause a user looks for.
fn name_oom_killed_workers<'p>(
    s: &mut MPIJobStatus,
    job: &str,
    expected: &[Role],
    find: &dyn Fn(Role) -> Option<&'p Pod>,
) {
    let Some(failed) = s
        .conditions
        .iter_mut()
        .find(|c| c.type_ == ConditionType::Failed && c.is_true())
    else {
        return;
    };
    let mut message = failed.message.clone().unwrap_or_default();
    for &role in expected.iter().filter(|r| matches!(r, Role::Worker(_))) {
        let Some((container, t)) = find(role).and_then(mpi_termination) else {
            continue;
        };
        if t.reason.as_deref() != Some("OOMKilled") {
            continue;
        }
        let line = describe(&who(role, job), &container, t);
        if !message.contains(&line) {
            message = if message.is_empty() {
                line
            } else {
                format!("{message}; {line}")
            };
        }
    }
    failed.message = Some(message);
}

/// `worker pi-worker-2`: a replica, as the messages name it.
fn who(role: Role, job: &str) -> String {
    format!("{} {}", role.replica_type().as_str(), role.pod_name(job))
}

/// The MPI container's termination, if it has ended.
fn mpi_termination(pod: &Pod) -> Option<(String, &ContainerStateTerminated)> {
    let spec = pod.spec.as_ref()?;
    let name = &spec
        .containers
        .get(mpi_container_index(&spec.containers))?
        .name;
    let cs = pod.status.as_ref()?.container_statuses.as_ref()?;
    let c = cs.iter().find(|c| &c.name == name)?;
    let t = c.state.as_ref()?.terminated.as_ref()?;
    Some((name.clone(), t))
}

fn replica_of(pod: &Pod) -> ReplicaStatus {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let state = c.state.as_ref();
                    let (phase, exit_code, reason, message) = match state {
                        Some(s) if s.terminated.is_some() => {
                            let t = s.terminated.as_ref().unwrap();
                            (
                                ContainerPhase::Terminated,
                                Some(t.exit_code),
                                t.reason.clone(),
                                t.message.clone(),
                            )
                        }
                        Some(s) if s.running.is_some() => {
                            (ContainerPhase::Running, None, None, None)
                        }
                        Some(s) => {
                            let w = s.waiting.as_ref();
                            (
                                ContainerPhase::Waiting,
                                None,
                                w.and_then(|w| w.reason.clone()),
                                w.and_then(|w| w.message.clone()),
                            )
                        }
                        None => (ContainerPhase::Waiting, None, None, None),
                    };
                    ContainerStatus {
                        name: c.name.clone(),
                        container_phase: phase,
                        exit_code,
                        // Never write empty strings: see tests/cluster/README.md.
                        reason: reason.filter(|r| !r.is_empty()),
                        message: message.filter(|m| !m.is_empty()),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    ReplicaStatus {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone(),
        phase: ReplicaPhase::of_pod(status.and_then(|s| s.phase.as_deref())),
        containers,
    }
}

/// A worker that runs with every container running, or succeeded with
/// every container exited 0 and no message, listed by name and phase
/// only: its uid and containers say nothing the phase does not. Any other
/// worker keeps its full entry.
fn compacted(r: ReplicaStatus) -> ReplicaStatus {
    let plain = match r.phase {
        ReplicaPhase::Running => r
            .containers
            .iter()
            .all(|c| c.container_phase == ContainerPhase::Running && c.reason.is_none()),
        ReplicaPhase::Succeeded => r.containers.iter().all(|c| {
            c.container_phase == ContainerPhase::Terminated
                && c.exit_code == Some(0)
                && c.message.is_none()
        }),
        _ => false,
    };
    if plain {
        ReplicaStatus {
            uid: None,
            containers: Vec::new(),
            ..r
        }
    } else {
        r
    }
}

fn count(a: &mut Aggregate, phase: ReplicaPhase) {
    let n = match phase {
        ReplicaPhase::Creating => &mut a.creating,
        ReplicaPhase::Pending => &mut a.pending,
        ReplicaPhase::Running => &mut a.running,
        ReplicaPhase::Succeeded => &mut a.succeeded,
        ReplicaPhase::Failed => &mut a.failed,
        ReplicaPhase::Deleted => &mut a.deleted,
        ReplicaPhase::Unknown => &mut a.unknown,
    };
    *n += 1;
}

fn finish_running(s: &mut MPIJobStatus, now: &Time) {
    if s.condition(ConditionType::Running).is_some() {
        set_condition(
            &mut s.conditions,
            ConditionType::Running,
            false,
            reason::JOB_FINISHED,
            "the job has finished",
            now,
        );
    }
}

/// Set a condition. Its transition time moves only when its status does.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let status = ConditionStatus::from(status);
    let new = |t: Option<Time>| Condition {
        type_,
        status,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_transition_time: t,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {
            let t = c.last_transition_time.clone();
            *c = new(t);
        }
        Some(c) => *c = new(Some(now.clone())),
        None => conditions.push(new(Some(now.clone()))),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
