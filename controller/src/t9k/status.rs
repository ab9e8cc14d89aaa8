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
use mpijob_api::v1beta1::{
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
mod tests {
    use super::*;
    use crate::t9k::build::fixtures;
    use serde_json::json;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn events_are_data_in_the_order_they_are_told() {
        use kube::runtime::events::EventType;
        let now = at("2026-01-01T00:00:00Z");
        // A new invalid job: its phase's event, with the condition's reason.
        let failed = invalid(None, Some(1), &["spec.worker: bad".into()], &now);
        let n = notes(None, &failed, &["ignored: Created did not change".into()]);
        assert_eq!(n, [Note::warning(reason::INVALID_SPEC, "spec.worker: bad")]);
        // Nothing changed: nothing to tell.
        assert!(notes(Some(&failed), &failed, &[]).is_empty());
        // Created turning true with a clash, and Pending: the clash first.
        let mut pending = MPIJobStatus {
            phase: Some(Phase::Pending),
            ..MPIJobStatus::default()
        };
        set_condition(
            &mut pending.conditions,
            ConditionType::Created,
            false,
            reason::NAME_CONFLICT,
            "Secret pi-ssh is someone else's",
            &now,
        );
        let n = notes(None, &pending, &["Secret pi-ssh is someone else's".into()]);
        assert_eq!(
            n.iter()
                .map(|n| (n.type_, n.reason.as_str()))
                .collect::<Vec<_>>(),
            [
                (EventType::Warning, reason::NAME_CONFLICT),
                (EventType::Normal, "Pending")
            ]
        );
    }

    fn pod(name: &str, phase: &str, mpi: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "sidecar"}, {"name": "mpi-worker"}]},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "mpi-worker", "ready": true, "restartCount": 0, "image": "", "imageID": "", "state": mpi}
            ]}
        }))
        .unwrap()
    }

    fn running(name: &str) -> Pod {
        pod(name, "Running", json!({"running": {}}))
    }

    fn exited(name: &str, code: i32, reason: &str, message: Option<&str>) -> Pod {
        let mut t = json!({"exitCode": code, "reason": reason});
        if let Some(m) = message {
            t["message"] = json!(m);
        }
        pod(
            name,
            if code == 0 { "Succeeded" } else { "Failed" },
            json!({"terminated": t}),
        )
    }

    fn compute_with(pods: &[Pod], prev: Option<&MPIJobStatus>, now: &str) -> MPIJobStatus {
        let job = fixtures::job(fixtures::PI);
        let refs: Vec<&Pod> = pods.iter().collect();
        let observed = Observed {
            all_created: true,
            ..Observed::default()
        };
        compute(&job, &refs, prev, &observed, &at(now))
    }

    #[test]
    fn above_the_threshold_healthy_workers_are_listed_by_name_and_phase() {
        let workers = COMPACT_ABOVE + 1;
        let mut job = fixtures::job(fixtures::PI);
        job.spec.worker_mut().replicas = workers as i32;
        let mut pods: Vec<Pod> = (0..workers)
            .map(|i| running(&format!("pi-worker-{i}")))
            .collect();
        pods.push(running("pi-launcher"));
        pods[1] = exited("pi-worker-1", 0, "Completed", None);
        pods[2] = exited("pi-worker-2", 0, "Completed", Some("bye"));
        pods[3] = pod(
            "pi-worker-3",
            "Running",
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
        );
        let observed = Observed {
            all_created: true,
            ..Observed::default()
        };
        let refs: Vec<&Pod> = pods.iter().collect();
        let s = compute(&job, &refs, None, &observed, &at("2026-01-01T00:00:00Z"));
        let listed = &s.tasks[1].replicas;
        assert_eq!(listed.len(), workers);
        let plain = |r: &ReplicaStatus| r.uid.is_none() && r.containers.is_empty();
        assert!(plain(&listed[0]) && listed[0].phase == ReplicaPhase::Running);
        assert!(plain(&listed[1]) && listed[1].phase == ReplicaPhase::Succeeded);
        // Anything with something to say keeps its full entry.
        assert_eq!(listed[2].containers[0].message.as_deref(), Some("bye"));
        assert_eq!(
            listed[3].containers[0].reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert!(
            !plain(&s.tasks[0].replicas[0]),
            "the launcher is always in full"
        );
        // A compact worker whose pod goes is still known to have existed.
        let gone: Vec<&Pod> = refs
            .iter()
            .copied()
            .filter(|p| p.metadata.name.as_deref() != Some("pi-worker-0"))
            .collect();
        let next = compute(
            &job,
            &gone,
            Some(&s),
            &observed,
            &at("2026-01-01T00:00:01Z"),
        );
        assert_eq!(next.tasks[1].replicas[0].phase, ReplicaPhase::Deleted);
        // At the threshold, every entry is in full.
        job.spec.worker_mut().replicas = COMPACT_ABOVE as i32;
        let s = compute(&job, &refs, None, &observed, &at("2026-01-01T00:00:00Z"));
        assert!(s.tasks[1].replicas[0].uid.is_some());
    }

    /// A value as the API server stores it: the enums keep the strings
    /// the status has always had.
    fn wire<T: serde::Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn condition<'a>(s: &'a MPIJobStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| wire(c.type_) == t).unwrap()
    }

    #[test]
    fn pending_until_every_pod_runs_then_running() {
        let t0 = "2026-01-01T00:00:00Z";
        let s = compute_with(&[running("pi-launcher"), running("pi-worker-0")], None, t0);
        assert_eq!(s.phase, Some(Phase::Pending));
        let a = s.aggregate.clone().unwrap();
        assert_eq!((a.running, a.creating), (2, 1));
        assert_eq!(s.start_time, Some(at(t0)));

        let pods = [
            running("pi-launcher"),
            running("pi-worker-0"),
            running("pi-worker-1"),
        ];
        let s = compute_with(&pods, Some(&s), "2026-01-01T00:00:05Z");
        assert_eq!(s.phase, Some(Phase::Running));
        assert_eq!(wire(condition(&s, "Running").status), "True");
        assert_eq!(s.start_time, Some(at(t0)), "the start time stays");
        assert_eq!(s.tasks[1].replicas[1].name, "pi-worker-1");
        assert_eq!(
            s.tasks[1].replicas[1].uid.as_deref(),
            Some("uid-pi-worker-1")
        );
        assert_eq!(
            wire(s.tasks[1].replicas[1].containers[0].container_phase),
            "Running"
        );
        assert_eq!(wire(&s.tasks[1].replica_type), "worker");
        assert_eq!(wire(&s.tasks[0].replica_type), "launcher");

        // Nothing changed: the same status, so no write.
        let again = compute_with(&pods, Some(&s), "2026-01-01T00:09:00Z");
        assert_eq!(again, s);
    }

    #[test]
    fn the_launcher_exiting_0_succeeds_and_keeps_every_exit_code() {
        let running_status = compute_with(
            &[
                running("pi-launcher"),
                running("pi-worker-0"),
                running("pi-worker-1"),
            ],
            None,
            "2026-01-01T00:00:00Z",
        );
        let pods = [
            exited("pi-launcher", 0, "Completed", None),
            running("pi-worker-0"),
            running("pi-worker-1"),
        ];
        let s = compute_with(&pods, Some(&running_status), "2026-01-01T00:01:00Z");
        assert_eq!(s.phase, Some(Phase::Succeeded));
        assert_eq!(s.completion_time, Some(at("2026-01-01T00:01:00Z")));
        assert_eq!(
            condition(&s, "Succeeded").reason.as_deref(),
            Some("LauncherSucceeded")
        );
        assert_eq!(wire(condition(&s, "Running").status), "False");
        let launcher = &s.tasks[0].replicas[0].containers[0];
        assert_eq!(
            (wire(launcher.container_phase).as_str(), launcher.exit_code),
            ("Terminated", Some(0))
        );

        // Finished is final; later the workers are cleaned up and the status
        // remembers them as deleted, exit codes and all.
        let later = compute_with(
            &[exited("pi-launcher", 0, "Completed", None)],
            Some(&s),
            "2026-01-01T00:02:00Z",
        );
        assert_eq!(later.phase, Some(Phase::Succeeded));
        assert_eq!(later.completion_time, s.completion_time);
        assert_eq!(wire(later.tasks[1].replicas[0].phase), "Deleted");
        assert_eq!(later.aggregate.unwrap().deleted, 2);
    }

    #[test]
    fn an_oom_killed_worker_seen_after_the_launcher_failed_is_named_too() {
        let running_status = compute_with(
            &[
                running("pi-launcher"),
                running("pi-worker-0"),
                running("pi-worker-1"),
            ],
            None,
            "2026-01-01T00:00:00Z",
        );
        let launcher_failed = exited(
            "pi-launcher",
            1,
            "Error",
            Some("mpirun exited 1: rank 1 on pi-worker-1 killed by signal 9"),
        );
        let first = compute_with(
            &[
                launcher_failed.clone(),
                running("pi-worker-0"),
                running("pi-worker-1"),
            ],
            Some(&running_status),
            "2026-01-01T00:01:00Z",
        );
        assert_eq!(first.phase, Some(Phase::Failed));
        let launcher_line = "launcher pi-launcher container mpi-worker exited 1 (Error): \
                             mpirun exited 1: rank 1 on pi-worker-1 killed by signal 9";
        assert_eq!(
            condition(&first, "Failed").message.as_deref(),
            Some(launcher_line)
        );
        let pods = [
            launcher_failed,
            running("pi-worker-0"),
            exited("pi-worker-1", 137, "OOMKilled", None),
        ];
        let later = compute_with(&pods, Some(&first), "2026-01-01T00:01:05Z");
        let failed = condition(&later, "Failed");
        assert_eq!(
            failed.message.as_deref().unwrap(),
            format!(
                "{launcher_line}; worker pi-worker-1 container mpi-worker exited 137 (OOMKilled)"
            )
        );
        assert_eq!(failed.reason.as_deref(), Some("LauncherFailed"));
        assert_eq!(
            failed.last_transition_time,
            condition(&first, "Failed").last_transition_time
        );
        assert_eq!(later.completion_time, first.completion_time);
        // Said once, not again on the next pass.
        let again = compute_with(&pods, Some(&later), "2026-01-01T00:01:10Z");
        assert_eq!(condition(&again, "Failed").message, failed.message);
    }

    #[test]
    fn failures_name_the_pod_the_container_the_code_and_the_reason() {
        let cases = [
            (
                vec![exited("pi-launcher", 3, "Error", Some("mpirun exited 3: rank 1 on pi-worker-1\nmore")), running("pi-worker-0"), running("pi-worker-1")],
                "LauncherFailed",
                "launcher pi-launcher container mpi-worker exited 3 (Error): mpirun exited 3: rank 1 on pi-worker-1",
            ),
            (
                vec![running("pi-launcher"), running("pi-worker-0"), exited("pi-worker-1", 137, "OOMKilled", None)],
                "WorkerFailed",
                "worker pi-worker-1 container mpi-worker exited 137 (OOMKilled)",
            ),
            (
                vec![running("pi-launcher"), running("pi-worker-1")],
                "PodDeleted",
                "worker pi-worker-0 was deleted while the job was running",
            ),
        ];
        let prev = compute_with(
            &[
                running("pi-launcher"),
                running("pi-worker-0"),
                running("pi-worker-1"),
            ],
            None,
            "2026-01-01T00:00:00Z",
        );
        for (pods, reason, message) in cases {
            let s = compute_with(&pods, Some(&prev), "2026-01-01T00:01:00Z");
            assert_eq!(s.phase, Some(Phase::Failed), "{message}");
            let c = condition(&s, "Failed");
            assert_eq!(c.reason.as_deref(), Some(reason));
            assert_eq!(c.message.as_deref(), Some(message));
        }
    }

    #[test]
    fn a_missing_pod_before_the_job_runs_is_being_created_not_failed() {
        let s = compute_with(&[running("pi-launcher")], None, "2026-01-01T00:00:00Z");
        assert_eq!(s.phase, Some(Phase::Pending));
        assert_eq!(wire(s.tasks[1].replicas[0].phase), "Creating");
    }

    #[test]
    fn an_evicted_launcher_fails_the_job_with_the_pods_reason() {
        let evicted: Pod = serde_json::from_value(json!({
            "metadata": {"name": "pi-launcher", "uid": "u"},
            "spec": {"containers": [{"name": "mpi-worker"}]},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}
        }))
        .unwrap();
        let s = compute_with(
            &[evicted, running("pi-worker-0"), running("pi-worker-1")],
            None,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            condition(&s, "Failed").message.as_deref(),
            Some("launcher pi-launcher failed: Evicted: The node was low on memory.")
        );
    }

    #[test]
    fn conditions_move_their_time_only_on_a_transition() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            ConditionType::Running,
            true,
            "A",
            "m1",
            &at("2026-01-01T00:00:00Z"),
        );
        set_condition(
            &mut c,
            ConditionType::Running,
            true,
            "A",
            "m2",
            &at("2026-01-01T00:05:00Z"),
        );
        assert_eq!(c[0].last_transition_time, Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(c[0].message.as_deref(), Some("m2"));
        set_condition(
            &mut c,
            ConditionType::Running,
            false,
            "B",
            "m3",
            &at("2026-01-01T00:07:00Z"),
        );
        assert_eq!(c[0].last_transition_time, Some(at("2026-01-01T00:07:00Z")));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn an_invalid_job_fails_with_every_message() {
        let s = invalid(
            None,
            Some(4),
            &["a: x".into(), "b: y".into()],
            &at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(s.phase, Some(Phase::Failed));
        let c = condition(&s, "Failed");
        assert_eq!(c.reason.as_deref(), Some("InvalidSpec"));
        assert_eq!(c.message.as_deref(), Some("a: x; b: y"));
        assert_eq!(s.observed_generation, Some(4));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::t9k::build::fixtures;
    use proptest::prelude::*;
    use serde_json::json;

    const PODS: [&str; 3] = ["pi-launcher", "pi-worker-0", "pi-worker-1"];

    /// What one pod is at one step.
    #[derive(Debug, Clone)]
    enum State {
        Absent,
        Pending,
        Running,
        Exited(i32, &'static str),
        Unknown,
    }

    fn state() -> impl Strategy<Value = State> {
        prop_oneof![
            Just(State::Absent),
            Just(State::Pending),
            Just(State::Running),
            (
                0i32..=255,
                prop::sample::select(&["Completed", "Error", "OOMKilled"][..])
            )
                .prop_map(|(c, r)| State::Exited(c, r)),
            Just(State::Unknown),
        ]
    }

    fn pod(name: &str, s: &State) -> Option<Pod> {
        let (phase, state) = match s {
            State::Absent => return None,
            State::Pending => (
                "Pending",
                json!({"waiting": {"reason": "ContainerCreating"}}),
            ),
            State::Running => ("Running", json!({"running": {}})),
            State::Exited(code, reason) => (
                if *code == 0 { "Succeeded" } else { "Failed" },
                json!({"terminated": {"exitCode": code, "reason": reason}}),
            ),
            State::Unknown => ("Unknown", json!({})),
        };
        Some(
            serde_json::from_value(json!({
                "metadata": {"name": name, "uid": format!("uid-{name}")},
                "spec": {"containers": [{"name": "mpi-worker"}]},
                "status": {"phase": phase, "containerStatuses": [
                    {"name": "mpi-worker", "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": state}
                ]}
            }))
            .unwrap(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the pods do from one reconcile to the next: the counts
        /// add up to the replicas, a finished phase never changes, and each
        /// exit code in the status is the pod's.
        #[test]
        fn status_invariants_hold_over_any_pod_history(
            steps in prop::collection::vec(prop::collection::vec(state(), 3), 1..8)
        ) {
            let job = fixtures::job(fixtures::PI);
            let observed = Observed { all_created: true, ..Observed::default() };
            let mut prev: Option<MPIJobStatus> = None;
            for (i, step) in steps.iter().enumerate() {
                let pods: Vec<Pod> = PODS.iter().zip(step).filter_map(|(n, s)| pod(n, s)).collect();
                let refs: Vec<&Pod> = pods.iter().collect();
                let now = Time(format!("2026-01-01T00:00:{:02}Z", i).parse().unwrap());
                let next = compute(&job, &refs, prev.as_ref(), &observed, &now);

                let a = next.aggregate.clone().unwrap();
                let sum = a.creating + a.pending + a.running + a.succeeded + a.failed + a.unknown + a.deleted;
                prop_assert_eq!(sum, 3, "{:?}", a);

                if let Some(p) = prev.as_ref().and_then(|p| p.phase).filter(|p| p.is_finished()) {
                    prop_assert_eq!(next.phase, Some(p), "a finished phase changed at step {}", i);
                }

                for (name, s) in PODS.iter().zip(step) {
                    if let State::Exited(code, _) = s {
                        let replica = next
                            .tasks
                            .iter()
                            .flat_map(|t| &t.replicas)
                            .find(|r| r.name == *name)
                            .unwrap();
                        let got = replica.containers.iter().find(|c| c.name == "mpi-worker").and_then(|c| c.exit_code);
                        prop_assert_eq!(got, Some(*code), "{}: {:?}", name, replica);
                    }
                }
                prev = Some(next);
            }
        }
    }
}
