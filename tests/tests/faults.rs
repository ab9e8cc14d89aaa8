//! Faults on the real node (`tests/e2e/e2e.sh start`), each with nothing
//! lost and nothing duplicated: every pod the job ever had is counted by
//! its uid from a watch started before the job, and the end state is
//! checked against the pods.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use mpijob_api::v1beta1::{ConditionType, MPIJobStatus, Phase, ReplicaPhase};
use mpijob_tests::controller::wait_for;
use mpijob_tests::e2e::{pi_example, E2e, OPENMPI_IMAGE};
use serde_json::json;

const T: Duration = Duration::from_secs(180);

/// The uids of every pod created in the namespace from now on.
fn every_pod_ever(pods: Api<Pod>) -> Arc<Mutex<BTreeSet<String>>> {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        let mut events = watcher(pods, watcher::Config::default()).boxed();
        while let Some(e) = events.next().await {
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = e {
                if let Some(uid) = p.uid() {
                    s.lock().unwrap().insert(format!("{}/{uid}", p.name_any()));
                }
            }
        }
    });
    seen
}

/// pi, named `name`, whose ranks sleep `secs` (a number unique to the test,
/// so that its mpirun can be told apart on the node).
fn sleeping_job(ns: &str, name: &str, secs: &str) -> serde_json::Value {
    let mut job = pi_example(ns, OPENMPI_IMAGE);
    job["metadata"]["name"] = json!(name);
    job["spec"]["worker"]["cmd"] = json!(["sleep", secs]);
    job
}

/// A job brought to Running in a fresh namespace, with every pod it ever
/// had counted.
struct Running {
    e2e: E2e,
    ns: mpijob_tests::TestNamespace,
    pods: Api<Pod>,
    ever: Arc<Mutex<BTreeSet<String>>>,
}

impl Running {
    async fn start(
        prefix: &str,
        name: &str,
        job: impl FnOnce(&str) -> serde_json::Value,
    ) -> Running {
        let e2e = E2e::get().await;
        let ns = e2e.namespace(prefix).await;
        let pods = e2e.pods(&ns.name);
        let ever = every_pod_ever(pods.clone());
        e2e.create(&ns.name, job(&ns.name)).await;
        e2e.wait_phase(&ns.name, name, Phase::Running, T).await;
        Running {
            e2e,
            ns,
            pods,
            ever,
        }
    }

    /// The names of every pod the namespace ever had.
    fn ever(&self) -> Vec<String> {
        let ever = self.ever.lock().unwrap();
        ever.iter()
            .map(|k| k.split('/').next().unwrap().to_string())
            .collect()
    }
}

fn failed(s: &MPIJobStatus) -> (String, String) {
    let c = s
        .condition(ConditionType::Failed)
        .expect("a Failed condition");
    (
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

/// 6. A worker pod deleted while the job runs: the job fails with
/// `PodDeleted` naming it, no pod replaces it, and `cleanUpWorkers: all`
/// removes the other worker.
#[tokio::test]
async fn a_worker_pod_deleted_mid_job_fails_it_with_pod_deleted_and_nothing_replaces_it() {
    let r = Running::start("fault-deleted", "lost", |ns| {
        let mut job = sleeping_job(ns, "lost", "600.6");
        job["spec"]["runPolicy"]["cleanUpWorkers"] = json!("all");
        job
    })
    .await;
    let (e2e, ns, pods) = (&r.e2e, &r.ns, &r.pods);
    pods.delete("lost-worker-1", &DeleteParams::default())
        .await
        .unwrap();
    let s = e2e.wait_phase(&ns.name, "lost", Phase::Failed, T).await;
    assert_eq!(
        failed(&s),
        (
            "PodDeleted".to_string(),
            "worker lost-worker-1 was deleted while the job was running".to_string()
        )
    );
    // The policy removes the other worker; the launcher stays.
    wait_for("the workers to be gone", T, || async {
        let left: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        if left == ["lost-launcher"] {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    let s = e2e
        .jobs(&ns.name)
        .get("lost")
        .await
        .unwrap()
        .status
        .unwrap();
    let workers = &s
        .task(&mpijob_api::v1beta1::ReplicaType::Worker)
        .unwrap()
        .replicas;
    assert!(
        workers.iter().all(|r| r.phase == ReplicaPhase::Deleted),
        "{workers:?}"
    );
    assert_eq!(s.phase, Some(Phase::Failed));
    // Exactly the three pods of the job were ever created.
    assert_eq!(
        r.ever(),
        ["lost-launcher", "lost-worker-0", "lost-worker-1"]
    );
}

/// The pid of the mpirun on this node whose command line holds `marker`.
fn mpirun_with(marker: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        (matches!(comm.trim(), "mpirun" | "orterun" | "prterun") && cmdline.contains(marker))
            .then_some(pid)
    })
}

/// 7. The launcher's mpirun killed with SIGKILL: the job fails, naming the
/// launcher, its container and exit code 137.
#[tokio::test]
async fn mpirun_killed_by_sigkill_fails_the_job_naming_the_launcher_and_137() {
    let r = Running::start("fault-sigkill", "killed", |ns| {
        sleeping_job(ns, "killed", "700.7")
    })
    .await;
    let (e2e, ns) = (&r.e2e, &r.ns);
    let pid = wait_for("mpirun on the node", T, || async {
        mpirun_with("700.7").ok_or_else(|| "not yet".to_string())
    })
    .await;
    nix_kill(pid);
    let s = e2e.wait_phase(&ns.name, "killed", Phase::Failed, T).await;
    let (reason, message) = failed(&s);
    println!("Failed: {reason}: {message}");
    assert_eq!(reason, "LauncherFailed");
    assert!(
        message.starts_with("launcher killed-launcher container mpi-worker exited 137"),
        "{message}"
    );
    let launcher = &s
        .task(&mpijob_api::v1beta1::ReplicaType::Launcher)
        .unwrap()
        .replicas[0];
    assert_eq!(launcher.containers[0].exit_code, Some(137), "{launcher:?}");
    assert_eq!(
        r.ever(),
        ["killed-launcher", "killed-worker-0", "killed-worker-1"]
    );
}

fn nix_kill(pid: i32) {
    // SAFETY: kill(2) with a pid read from /proc a moment ago.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(r, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}
