//! The status computation's invariants, over random pod histories.

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
