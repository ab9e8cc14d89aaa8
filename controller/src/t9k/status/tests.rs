//! The status computation, case by case.

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
        format!("{launcher_line}; worker pi-worker-1 container mpi-worker exited 137 (OOMKilled)")
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
