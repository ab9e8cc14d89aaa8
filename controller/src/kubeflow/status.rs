//! A Kubeflow MPIJob's status, as a pure function of what the caches show.
//!
//! Conditions, reasons and messages are mpi-operator's, so that tools keyed
//! on them keep working, with three changes, each a fix of a known
//! mpi-operator failure:
//! - a failure's message also names the pod, the container, the exit code
//!   and the reason;
//! - an eviction sets `completionTime`, so the clean-up policy runs
//!   (mpi-operator #647);
//! - a worker pod that fails (it is never recreated, so mpirun cannot
//!   succeed) fails the job at once, naming the worker, its container, the
//!   exit code and the reason (an OOM kill: 137, `OOMKilled`), where
//!   mpi-operator leaves the launcher to fail and restart until its
//!   `backoffLimit`, and then names only the launcher;
//! - events are emitted when a condition changes, not on every sync.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use mpijob_api::kubeflow::v2beta1::{
    condition, replica_type, JobCondition, JobStatus, ReplicaStatus,
};

use crate::core::events::truncate;
use crate::core::failure::{describe, pod_failure};
use crate::gang;

/// Reasons, as mpi-operator writes them.
pub mod reason {
    pub const CREATED: &str = "MPIJobCreated";
    pub const RUNNING: &str = "MPIJobRunning";
    pub const SUCCEEDED: &str = "MPIJobSucceeded";
    pub const FAILED: &str = "MPIJobFailed";
    pub const EVICTED: &str = "MPIJobEvicted";
    pub const SUSPENDED: &str = "MPIJobSuspended";
    pub const RESUMED: &str = "MPIJobResumed";
    pub const VALIDATION_ERROR: &str = "ValidationError";
    pub const RESOURCE_EXISTS: &str = "ErrResourceExists";
    pub const SET_POD_TEMPLATE_RESTART_POLICY: &str = "SetPodTemplateRestartPolicy";
    /// The launcher Job's condition reason that mpi-operator extends with
    /// the last failed pod's reason.
    pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
}

/// An event to emit, and a counter to bump, because of a status change.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
    pub counts: Option<Count>,
}

impl Note {
    /// The event, for the status writer.
    pub fn event(self) -> crate::core::status::Note {
        crate::core::status::Note {
            type_: self.type_,
            reason: self.reason,
            message: self.message,
        }
    }
}

/// Kubeflow's job counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Created,
    Succeeded,
    Failed,
}

/// What the caches show of one job.
pub struct Seen<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub suspended: bool,
    /// The launcher Job, if it exists.
    pub launcher: Option<&'a Job>,
    /// The launcher Job's pods.
    pub launcher_pods: &'a [&'a Pod],
    /// The worker pods (none once the launcher has finished, or while the
    /// job is suspended).
    pub worker_pods: &'a [&'a Pod],
}

/// Set `type_` as mpi-operator's `setCondition` does: nothing changes once
/// the job has Failed, or when the status and reason are the same; the
/// transition time is kept while the status is; the condition moves to the
/// end of the list; and Succeeded or Failed turn Running and Failed False.
/// Returns whether anything changed.
pub fn set_condition(
    s: &mut JobStatus,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) -> bool {
    if s.is_true(condition::FAILED) {
        return false;
    }
    let status = if status { "True" } else { "False" };
    let current = s.condition(type_);
    if current.is_some_and(|c| c.status == status && c.reason.as_deref() == Some(reason)) {
        return false;
    }
    let transition = match current {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    let finishing = type_ == condition::SUCCEEDED || type_ == condition::FAILED;
    s.conditions.retain(|c| c.type_ != type_);
    if finishing {
        for c in &mut s.conditions {
            if c.type_ == condition::RUNNING || c.type_ == condition::FAILED {
                c.status = "False".to_string();
            }
        }
    }
    s.conditions.push(JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_update_time: Some(now.clone()),
        last_transition_time: transition,
    });
    true
}

/// The gang condition (see [`crate::gang::condition`]), kept first in the
/// list. A Note when its reason changes, not for every pod placed.
pub fn gang(s: &mut JobStatus, state: &gang::State, pods: &[&Pod], now: &Time) -> Option<Note> {
    if s.is_finished() {
        return None;
    }
    let (placed, why, message) = gang::condition(state, pods)?;
    let status = if placed { "True" } else { "False" };
    let new = JobCondition {
        type_: condition::SCHEDULED.to_string(),
        status: status.to_string(),
        reason: Some(why.to_string()),
        message: Some(message.clone()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let at = s
        .conditions
        .iter()
        .position(|c| c.type_ == condition::SCHEDULED);
    let Some(i) = at else {
        s.conditions.insert(0, new);
        return Some(gang_note(why, message));
    };
    let c = &mut s.conditions[i];
    if c.status == status
        && c.reason.as_deref() == Some(why)
        && c.message.as_deref() == Some(&message)
    {
        return None;
    }
    let reason_changed = c.reason.as_deref() != Some(why);
    let transition = if c.status == status {
        c.last_transition_time.clone()
    } else {
        Some(now.clone())
    };
    *c = JobCondition {
        last_transition_time: transition,
        ..new
    };
    reason_changed.then(|| gang_note(why, message))
}

fn gang_note(why: &str, message: String) -> Note {
    Note {
        type_: if why == gang::reason::CRD_MISSING {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: why.to_string(),
        message,
        counts: None,
    }
}

/// The Created condition of a new job.
pub fn created(s: &mut JobStatus, name: &str, namespace: &str, now: &Time) -> Option<Note> {
    let message = format!("MPIJob {namespace}/{name} is created.");
    set_condition(s, condition::CREATED, true, reason::CREATED, &message, now).then(|| Note {
        type_: EventType::Normal,
        reason: reason::CREATED.to_string(),
        message,
        counts: Some(Count::Created),
    })
}

/// Suspended, or resumed if it was suspended before. Resuming restarts the
/// clock (`startTime`).
pub fn suspension(s: &mut JobStatus, suspended: bool, now: &Time) -> Option<Note> {
    if suspended {
        set_condition(
            s,
            condition::SUSPENDED,
            true,
            reason::SUSPENDED,
            "MPIJob suspended",
            now,
        )
        .then(|| normal(reason::SUSPENDED, "MPIJob suspended"))
    } else if s.condition(condition::SUSPENDED).is_some()
        && set_condition(
            s,
            condition::SUSPENDED,
            false,
            reason::RESUMED,
            "MPIJob resumed",
            now,
        )
    {
        s.start_time = Some(now.clone());
        Some(normal(reason::RESUMED, "MPIJob resumed"))
    } else {
        None
    }
}

/// Replica counts and the Running, Succeeded and Failed conditions.
pub fn update(s: &mut JobStatus, seen: &Seen, now: &Time) -> Vec<Note> {
    let mut notes = Vec::new();
    let (name, ns) = (seen.name, seen.namespace);
    let launcher_running = seen
        .launcher_pods
        .iter()
        .filter(|p| phase(p) == "Running")
        .count();

    let mut workers = ReplicaStatus::default();
    let mut evicted = Vec::new();
    let mut failed = Vec::new();
    for pod in seen.worker_pods {
        match phase(pod) {
            "Failed" => {
                workers.failed += 1;
                if pod.status.as_ref().and_then(|st| st.reason.as_deref()) == Some("Evicted") {
                    evicted.push(*pod);
                } else if pod.metadata.deletion_timestamp.is_none() {
                    // A pod being deleted (suspend, clean-up, scale-down)
                    // may end non-zero on its SIGTERM: that is no failure.
                    failed.push(*pod);
                }
            }
            "Succeeded" => workers.succeeded += 1,
            "Running" => workers.active += 1,
            _ => {}
        }
    }
    let all_running = workers.active as usize == seen.worker_pods.len();
    s.replica_statuses
        .insert(replica_type::WORKER.to_string(), workers);

    // Before the launcher's verdict: when both failed in one look, the
    // worker is the cause.
    if !failed.is_empty() && !s.is_finished() {
        let who: Vec<String> = failed
            .iter()
            .filter_map(|p| failed_container(&format!("worker pod {}", pod_name(p)), p))
            .collect();
        let message = truncate(
            &format!(
                "MPIJob {ns}/{name} has failed: {}/{} workers failed: {}",
                failed.len(),
                seen.worker_pods.len(),
                who.join("; ")
            ),
            1024,
        );
        s.completion_time.get_or_insert_with(|| now.clone());
        if set_condition(s, condition::FAILED, true, reason::FAILED, &message, now) {
            notes.push(Note {
                type_: EventType::Warning,
                reason: reason::FAILED.to_string(),
                message,
                counts: Some(Count::Failed),
            });
        }
    }

    if let Some(job) = seen.launcher {
        let js = job.status.clone().unwrap_or_default();
        let mut launcher = ReplicaStatus {
            failed: js.failed.unwrap_or(0),
            ..ReplicaStatus::default()
        };
        if job_condition(job, "Complete").is_some() {
            launcher.succeeded = 1;
            let message = format!("MPIJob {ns}/{name} successfully completed.");
            if s.completion_time.is_none() {
                s.completion_time = js.completion_time.clone().or_else(|| Some(now.clone()));
            }
            if set_condition(
                s,
                condition::SUCCEEDED,
                true,
                reason::SUCCEEDED,
                &message,
                now,
            ) {
                notes.push(Note {
                    counts: Some(Count::Succeeded),
                    ..normal(reason::SUCCEEDED, &message)
                });
            }
        } else if let Some(c) = job_condition(job, "Failed") {
            let (reason, message) = launcher_failure(c, seen.launcher_pods, name, ns);
            if s.completion_time.is_none() {
                s.completion_time = Some(now.clone());
            }
            if set_condition(s, condition::FAILED, true, &reason, &message, now) {
                notes.push(Note {
                    type_: EventType::Warning,
                    reason,
                    message,
                    counts: Some(Count::Failed),
                });
            }
        } else {
            launcher.active = launcher_running as i32;
        }
        s.replica_statuses
            .insert(replica_type::LAUNCHER.to_string(), launcher);
    }

    if !evicted.is_empty() {
        let who: Vec<String> = evicted
            .iter()
            .filter_map(|p| pod_failure(&format!("worker {}", pod_name(p)), p))
            .collect();
        let message = format!(
            "{}/{} workers are evicted: {}",
            evicted.len(),
            seen.worker_pods.len(),
            who.join("; ")
        );
        // mpi-operator sets no completionTime here, so clean-up never runs
        // (#647); the job is over, so it gets one.
        if set_condition(s, condition::FAILED, true, reason::EVICTED, &message, now) {
            s.completion_time.get_or_insert_with(|| now.clone());
            notes.push(Note {
                type_: EventType::Warning,
                reason: reason::EVICTED.to_string(),
                message,
                counts: None,
            });
        }
    }

    if seen.suspended {
        let message = format!("MPIJob {ns}/{name} is suspended.");
        set_condition(
            s,
            condition::RUNNING,
            false,
            reason::SUSPENDED,
            &message,
            now,
        );
    } else if seen.launcher.is_some() && launcher_running >= 1 && all_running {
        let message = format!("MPIJob {ns}/{name} is running.");
        if set_condition(s, condition::RUNNING, true, reason::RUNNING, &message, now) {
            notes.push(normal(reason::RUNNING, &message));
        }
    }

    // A job that ended before it was ever seen running still says so
    // (mpi-operator PR #787), timestamped at its end.
    if s.is_finished() && s.condition(condition::RUNNING).is_none() {
        let at = s.completion_time.clone().unwrap_or_else(|| now.clone());
        let (reason, message) = match s.conditions.last() {
            Some(c) => (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            ),
            None => (String::new(), String::new()),
        };
        s.conditions.push(JobCondition {
            type_: condition::RUNNING.to_string(),
            status: "False".to_string(),
            reason: Some(reason),
            message: Some(message),
            last_update_time: Some(at.clone()),
            last_transition_time: Some(at),
        });
    }
    notes
}

/// The Failed condition's reason and message for a failed launcher Job:
/// the Job's reason (or `MPIJobFailed`); for `BackoffLimitExceeded`, with
/// the last failed pod's reason and message appended as mpi-operator does;
/// and then what that pod's container said: exit code and reason.
fn launcher_failure(
    c: &k8s_openapi::api::batch::v1::JobCondition,
    pods: &[&Pod],
    name: &str,
    ns: &str,
) -> (String, String) {
    let mut reason = c
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| reason::FAILED.to_string());
    let mut message = c
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("MPIJob {ns}/{name} has failed"));
    let last_failed = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if reason == reason::BACKOFF_LIMIT_EXCEEDED {
        let st = last_failed.and_then(|p| p.status.as_ref());
        reason = format!(
            "{reason}/{}",
            st.and_then(|s| s.reason.clone()).unwrap_or_default()
        );
        message = format!(
            "{message}: {}",
            st.and_then(|s| s.message.clone()).unwrap_or_default()
        );
    }
    if let Some(detail) =
        last_failed.and_then(|p| failed_container(&format!("launcher pod {}", pod_name(p)), p))
    {
        message = format!("{message}; {detail}");
    }
    (reason, truncate(&message, 1024))
}

/// `launcher pod pi-launcher-x7k2p container mpi-launcher exited 1 (Error)`:
/// the first container (or init container) of `pod`, called `who`, that
/// ended in failure.
fn failed_container(who: &str, pod: &Pod) -> Option<String> {
    let st = pod.status.as_ref()?;
    let statuses = st
        .container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten());
    for c in statuses {
        let t = c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        if let Some(t) = t.filter(|t| t.exit_code != 0) {
            return Some(describe(who, &c.name, t));
        }
    }
    pod_failure(who, pod)
}

pub(crate) fn job_condition<'j>(
    job: &'j Job,
    type_: &str,
) -> Option<&'j k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn pod_name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}

fn normal(reason: &str, message: &str) -> Note {
    Note {
        type_: EventType::Normal,
        reason: reason.to_string(),
        message: message.to_string(),
        counts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn job(v: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "pi-launcher"}, "status": v})).unwrap()
    }

    fn seen<'a>(launcher: Option<&'a Job>, lp: &'a [&'a Pod], wp: &'a [&'a Pod]) -> Seen<'a> {
        Seen {
            name: "pi",
            namespace: "ns",
            suspended: false,
            launcher,
            launcher_pods: lp,
            worker_pods: wp,
        }
    }

    fn running(name: &str) -> Pod {
        pod(json!({"metadata": {"name": name}, "status": {"phase": "Running"}}))
    }

    fn kinds(s: &JobStatus) -> Vec<(String, String)> {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect()
    }

    #[test]
    fn created_then_running_then_succeeded() {
        let now = t("2026-01-01T00:00:00Z");
        let mut s = JobStatus::default();
        let n = created(&mut s, "pi", "ns", &now).unwrap();
        assert_eq!(
            (n.reason.as_str(), n.message.as_str()),
            ("MPIJobCreated", "MPIJob ns/pi is created.")
        );
        assert_eq!(created(&mut s, "pi", "ns", &now), None, "once");

        let (w0, w1, l) = (
            running("pi-worker-0"),
            running("pi-worker-1"),
            running("pi-launcher-abc"),
        );
        let active = job(json!({"active": 1}));
        let notes = update(&mut s, &seen(Some(&active), &[&l], &[&w0, &w1]), &now);
        assert_eq!(
            notes.iter().map(|n| n.reason.as_str()).collect::<Vec<_>>(),
            ["MPIJobRunning"]
        );
        assert_eq!(s.replica_statuses["Worker"].active, 2);
        assert_eq!(s.replica_statuses["Launcher"].active, 1);

        let later = t("2026-01-01T00:01:00Z");
        let done = job(
            json!({"succeeded": 1, "completionTime": "2026-01-01T00:00:59Z", "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        let notes = update(&mut s, &seen(Some(&done), &[], &[]), &later);
        assert_eq!(notes[0].reason, "MPIJobSucceeded");
        assert_eq!(notes[0].message, "MPIJob ns/pi successfully completed.");
        assert_eq!(notes[0].counts, Some(Count::Succeeded));
        assert_eq!(s.completion_time, Some(t("2026-01-01T00:00:59Z")));
        assert_eq!(
            kinds(&s),
            [
                ("Created".into(), "True".into()),
                ("Running".into(), "False".into()),
                ("Succeeded".into(), "True".into())
            ]
        );
        assert_eq!(
            s.replica_statuses["Launcher"],
            ReplicaStatus {
                succeeded: 1,
                ..Default::default()
            }
        );
        assert_eq!(s.replica_statuses["Worker"], ReplicaStatus::default());
        assert!(
            update(&mut s, &seen(Some(&done), &[], &[]), &later).is_empty(),
            "no second event"
        );
    }

    #[test]
    fn a_backoff_failure_names_the_pod_container_exit_code_and_reason() {
        let now = t("2026-01-01T00:00:00Z");
        let mut s = JobStatus::default();
        created(&mut s, "pi", "ns", &now);
        let failed = pod(json!({
            "metadata": {"name": "pi-launcher-x7k2p", "creationTimestamp": "2026-01-01T00:00:10Z"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "mpi-launcher", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
        }));
        let j = job(
            json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        let notes = update(&mut s, &seen(Some(&j), &[&failed], &[]), &now);
        let c = s.condition("Failed").unwrap();
        assert_eq!(c.reason.as_deref(), Some("BackoffLimitExceeded/"));
        assert_eq!(
            c.message.as_deref(),
            Some("Job has reached the specified backoff limit: ; launcher pod pi-launcher-x7k2p container mpi-launcher exited 1 (Error)")
        );
        assert_eq!(notes[0].type_, EventType::Warning);
        assert_eq!(notes[0].counts, Some(Count::Failed));
        assert_eq!(s.replica_statuses["Launcher"].failed, 2);
        assert_eq!(s.completion_time, Some(now.clone()));
        // Failed is final: nothing changes it any more.
        assert!(!set_condition(
            &mut s,
            "Running",
            true,
            "MPIJobRunning",
            "x",
            &now
        ));
        assert_eq!(
            kinds(&s).last().unwrap().0,
            "Running",
            "Running=False appended at the end"
        );
    }

    #[test]
    fn an_oom_killed_worker_fails_the_job_at_once_and_is_named() {
        let now = t("2026-01-01T00:00:00Z");
        let mut s = JobStatus::default();
        let w0 = running("pi-worker-0");
        let w1 = pod(
            json!({"metadata": {"name": "pi-worker-1"}, "status": {"phase": "Failed",
            "containerStatuses": [{"name": "mpi-worker", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}),
        );
        let j = job(json!({"active": 1}));
        let lp = running("pi-launcher-x7k2p");
        let notes = update(&mut s, &seen(Some(&j), &[&lp], &[&w0, &w1]), &now);
        let want = "MPIJob ns/pi has failed: 1/2 workers failed: worker pod pi-worker-1 container mpi-worker exited 137 (OOMKilled)";
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(
            (
                notes[0].reason.as_str(),
                notes[0].message.as_str(),
                notes[0].counts
            ),
            ("MPIJobFailed", want, Some(Count::Failed))
        );
        let c = s.condition("Failed").unwrap();
        assert_eq!(c.message.as_deref(), Some(want));
        assert_eq!(
            s.completion_time,
            Some(now.clone()),
            "so that clean-up runs"
        );
        assert!(!s.is_true("Running"));

        // The launcher failing afterwards changes nothing: the worker is
        // the cause.
        let j = job(
            json!({"failed": 6, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
        );
        let notes = update(
            &mut s,
            &seen(Some(&j), &[], &[&w0, &w1]),
            &t("2026-01-01T00:05:00Z"),
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            s.condition("Failed").unwrap().message.as_deref(),
            Some(want)
        );
    }

    #[test]
    fn a_worker_ending_non_zero_while_deleted_is_no_failure() {
        let mut s = JobStatus::default();
        let w0 = pod(
            json!({"metadata": {"name": "pi-worker-0", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "mpi-worker", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 143, "reason": "Error"}}}]}}),
        );
        let j = job(json!({"active": 1}));
        update(
            &mut s,
            &seen(Some(&j), &[], &[&w0]),
            &t("2026-01-01T00:00:00Z"),
        );
        assert!(!s.is_true("Failed"), "{s:?}");
        assert_eq!(s.replica_statuses["Worker"].failed, 1);
    }

    #[test]
    fn an_eviction_fails_the_job_and_ends_it() {
        let now = t("2026-01-01T00:00:00Z");
        let mut s = JobStatus::default();
        let w0 = running("pi-worker-0");
        let w1 = pod(
            json!({"metadata": {"name": "pi-worker-1"}, "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}}),
        );
        let j = job(json!({"active": 1}));
        let notes = update(&mut s, &seen(Some(&j), &[], &[&w0, &w1]), &now);
        assert_eq!(notes[0].reason, "MPIJobEvicted");
        assert_eq!(
            notes[0].message,
            "1/2 workers are evicted: worker pi-worker-1 failed: Evicted: The node was low on resource: memory."
        );
        assert!(s.is_true("Failed"));
        assert_eq!(s.completion_time, Some(now), "so that clean-up runs (#647)");
    }

    #[test]
    fn suspend_and_resume() {
        let t0 = t("2026-01-01T00:00:00Z");
        let t1 = t("2026-01-01T00:05:00Z");
        let mut s = JobStatus::default();
        assert_eq!(
            suspension(&mut s, false, &t0),
            None,
            "never suspended: nothing to resume"
        );
        assert_eq!(
            suspension(&mut s, true, &t0).unwrap().reason,
            "MPIJobSuspended"
        );
        let mut sn = seen(None, &[], &[]);
        sn.suspended = true;
        update(&mut s, &sn, &t0);
        assert_eq!(
            s.condition("Running").unwrap().reason.as_deref(),
            Some("MPIJobSuspended")
        );
        assert_eq!(suspension(&mut s, true, &t0), None);
        let n = suspension(&mut s, false, &t1).unwrap();
        assert_eq!(
            (n.reason.as_str(), n.message.as_str()),
            ("MPIJobResumed", "MPIJob resumed")
        );
        assert_eq!(s.start_time, Some(t1));
        assert_eq!(s.condition("Suspended").unwrap().status, "False");
    }
}
