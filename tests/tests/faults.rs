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
use mpijob_api::t9k::v1beta1::{ConditionType, MPIJobStatus, Phase, ReplicaPhase};
use mpijob_tests::controller::wait_for;
use mpijob_tests::e2e::{pi_example, Component, OPENMPI_IMAGE};
use serde_json::json;

type E2e = mpijob_tests::e2e::E2e<mpijob_api::MPIJob>;

/// Longer than the library's [`mpijob_tests::T`]: a fault takes time to recover from.
const T: Duration = Duration::from_secs(180);

/// The faults hit what every test shares (the controller): one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _one_at_a_time = SERIAL.lock().await;
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
    // The status follows the pods' going: the reconcile that sees the last
    // one gone may still be writing when the API server no longer lists it.
    let s = wait_for("every worker's task to read Deleted", T, || async {
        let s = e2e
            .jobs(&ns.name)
            .get("lost")
            .await
            .map_err(|e| e.to_string())?
            .status
            .ok_or("no status")?;
        let workers = &s
            .task(&mpijob_api::t9k::v1beta1::ReplicaType::Worker)
            .ok_or("no worker task")?
            .replicas;
        if workers.iter().all(|r| r.phase == ReplicaPhase::Deleted) {
            Ok(s)
        } else {
            Err(format!("{workers:?}"))
        }
    })
    .await;
    assert_eq!(s.phase, Some(Phase::Failed));
    // Exactly the three pods of the job were ever created.
    assert_eq!(
        r.ever(),
        ["lost-launcher", "lost-worker-0", "lost-worker-1"]
    );
}

/// The pid of the mpirun on this node whose command line holds `marker`.
fn mpirun_with(marker: &str) -> Option<i32> {
    process(|comm, cmdline| {
        matches!(comm, "mpirun" | "orterun" | "prterun") && cmdline.contains(marker)
    })
}

/// The pid of the first process on this node whose name (`comm`) and
/// command line `pick` takes.
fn process(pick: impl Fn(&str, &str) -> bool) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        pick(comm.trim(), &cmdline).then_some(pid)
    })
}

/// 7. The launcher's mpirun killed with SIGKILL: the job fails, naming the
/// launcher, its container and exit code 137.
#[tokio::test]
async fn mpirun_killed_by_sigkill_fails_the_job_naming_the_launcher_and_137() {
    let _one_at_a_time = SERIAL.lock().await;
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
        .task(&mpijob_api::t9k::v1beta1::ReplicaType::Launcher)
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

/// 1. The controller killed (SIGKILL) while it creates a 32-worker job:
/// the kubelet restarts it, and the new one adopts what exists. Exactly
/// 32 workers and 1 launcher are ever created, and the job succeeds.
#[tokio::test]
async fn the_controller_killed_mid_create_creates_each_pod_once_after_it_restarts() {
    let _one_at_a_time = SERIAL.lock().await;
    let e2e = E2e::get().await;
    let ns = e2e.namespace("fault-controller").await;
    let pods = e2e.pods(&ns.name);
    let ever = every_pod_ever(pods.clone());
    let before = controller_pid().expect("the controller runs on the node");
    let mut job = sleeping_job(&ns.name, "big", "1");
    job["spec"]["worker"]["replicas"] = json!(32);
    job["spec"]["worker"]["cmd"] = json!(["hostname"]);
    e2e.create(&ns.name, job).await;
    // The first pod is there: the others are on their way.
    wait_for("the first pod", T, || async {
        (!ever.lock().unwrap().is_empty())
            .then_some(())
            .ok_or_else(|| "none".to_string())
    })
    .await;
    nix_kill(before);
    let at_kill = ever.lock().unwrap().len();
    println!("controller {before} killed with {at_kill} of 33 pods created");
    let after = wait_for("the controller to run again", T, || async {
        controller_pid()
            .filter(|p| *p != before)
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let s = e2e
        .wait_phase(&ns.name, "big", Phase::Succeeded, Duration::from_secs(600))
        .await;
    let workers = &s
        .task(&mpijob_api::t9k::v1beta1::ReplicaType::Worker)
        .unwrap()
        .replicas;
    assert_eq!(workers.len(), 32);
    let ever: Vec<String> = ever.lock().unwrap().iter().cloned().collect();
    let names: BTreeSet<&str> = ever.iter().map(|k| k.split('/').next().unwrap()).collect();
    assert_eq!(ever.len(), 33, "pods ever created (name/uid): {ever:?}");
    assert_eq!(names.len(), 33);
    assert!(names.contains("big-launcher"));
    println!("the controller came back as {after}; 33 pods, each created once");
}

/// 2. Two controller replicas, and the leader killed mid-job: another
/// replica takes the Lease over once it runs out (15 s), nothing is created
/// twice, and the job succeeds. The take-over time is printed (a figure,
/// not an assertion: tests assert no upper bound on time).
#[tokio::test]
async fn the_standby_takes_over_when_the_leader_is_killed_mid_job() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{PostParams, PropagationPolicy};
    use mpijob_tests::e2e::OPERATOR_NAMESPACE;

    let _one_at_a_time = SERIAL.lock().await;
    let e2e = E2e::get().await;
    let client = e2e.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let system_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let holder = || async {
        leases
            .get_opt("mpijob-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let leader = wait_for("a leader", T, || async {
        holder().await.ok_or_else(|| "none".to_string())
    })
    .await;

    // A second replica: the same controller, with its own health port (the
    // pods share the node's network) and its own labels.
    let mut standby = deployments.get("mpijob-controller").await.unwrap();
    standby.metadata = kube::api::ObjectMeta {
        name: Some("mpijob-controller-standby".into()),
        namespace: Some(OPERATOR_NAMESPACE.into()),
        ..Default::default()
    };
    let spec = standby.spec.as_mut().unwrap();
    spec.replicas = Some(1);
    let label = ("fault".to_string(), "standby".to_string());
    spec.selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(label.0.clone(), label.1.clone());
    let template = &mut spec.template;
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert(label.0, label.1);
    let c = &mut template.spec.as_mut().unwrap().containers[0];
    let args = c.args.as_mut().unwrap();
    let at = args.iter().position(|a| a == "--health-addr").unwrap() + 1;
    let (ip, port) = args[at].rsplit_once(':').unwrap();
    let port: u16 = port.parse::<u16>().unwrap() + 1;
    args[at] = format!("{ip}:{port}");
    for p in c.ports.iter_mut().flatten() {
        p.container_port = i32::from(port);
        p.host_port = Some(i32::from(port));
    }
    standby.status = None;
    deployments
        .create(&PostParams::default(), &standby)
        .await
        .unwrap();
    let standby_pod = wait_for("the standby to run", T, || async {
        let list = system_pods
            .list(&ListParams::default().labels("fault=standby"))
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .map(|p| p.name_any())
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(
        holder().await.as_deref(),
        Some(leader.as_str()),
        "the first replica still leads"
    );

    let ns = e2e.namespace("fault-leader").await;
    let pods = e2e.pods(&ns.name);
    let ever = every_pod_ever(pods.clone());
    e2e.create(&ns.name, sleeping_job(&ns.name, "failover", "20"))
        .await;
    e2e.wait_phase(&ns.name, "failover", Phase::Running, T)
        .await;

    // Kill the leader: SIGKILL to its process (no lease release), and its
    // pod deleted at once, so that the kubelet does not restart it under
    // the same identity.
    let pid = leader_pid(&leader).expect("the leader's process on the node");
    let killed = std::time::Instant::now();
    nix_kill(pid);
    system_pods
        .delete(
            &leader,
            &DeleteParams {
                grace_period_seconds: Some(0),
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Whichever replica runs now (the standby, or the leader's own
    // replacement pod) takes the lease once it runs out.
    let successor = wait_for(
        "another replica to lead",
        Duration::from_secs(60),
        || async {
            match holder().await {
                Some(h) if h != leader => Ok(h),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let took = killed.elapsed();
    println!(
        "{successor} took over {:.1} s after the leader {leader} was killed (standby: {standby_pod})",
        took.as_secs_f64()
    );

    let s = e2e
        .wait_phase(&ns.name, "failover", Phase::Succeeded, T)
        .await;
    assert_eq!(s.phase, Some(Phase::Succeeded));
    let ever: Vec<String> = ever.lock().unwrap().iter().cloned().collect();
    assert_eq!(ever.len(), 3, "pods ever created (name/uid): {ever:?}");

    deployments
        .delete("mpijob-controller-standby", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the standby to go", T, || async {
        let left = system_pods
            .list(&ListParams::default().labels("fault=standby"))
            .await
            .map_err(|e| e.to_string())?;
        if left.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{}", left.items.len()))
        }
    })
    .await;
}

/// The pid of the controller process of pod `pod` (its `POD_NAME`).
fn leader_pid(pod: &str) -> Option<i32> {
    let want = format!("POD_NAME={pod}");
    controller_in_pod(|name| name == want.as_bytes())
}

/// The controller's pid on the node: the one in a pod (it has a
/// `POD_NAME`), not one that a harness test beside this binary started.
fn controller_pid() -> Option<i32> {
    controller_in_pod(|_| true)
}

/// The first controller process whose `POD_NAME=…` entry `pick` takes.
fn controller_in_pod(pick: impl Fn(&[u8]) -> bool) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        (comm.starts_with("mpijob-control")
            && env
                .split(|b| *b == 0)
                .any(|kv| kv.starts_with(b"POD_NAME=") && pick(kv)))
        .then_some(pid)
    })
}

/// Restart a component of the cluster, off the async runtime.
async fn restart(name: &'static str) {
    tokio::task::spawn_blocking(move || Component { name }.restart())
        .await
        .unwrap();
}

/// 3. kube-apiserver restarted while a job runs: the controller reconnects
/// without a restart of its own, and the job's final status is right.
#[tokio::test]
async fn the_controller_rides_out_an_api_server_restart() {
    let _one_at_a_time = SERIAL.lock().await;
    let r = Running::start("fault-apiserver", "through", |ns| {
        sleeping_job(ns, "through", "30.3")
    })
    .await;
    let controller = controller_pid().expect("the controller runs on the node");
    restart("kube-apiserver").await;
    wait_for("the API server to answer again", T, || async {
        r.e2e
            .jobs(&r.ns.name)
            .get("through")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    let s = r
        .e2e
        .wait_phase(&r.ns.name, "through", Phase::Succeeded, T)
        .await;
    assert_eq!(s.aggregate.unwrap().failed, 0);
    assert_eq!(
        controller_pid(),
        Some(controller),
        "the controller restarted"
    );
    assert_eq!(
        r.ever(),
        ["through-launcher", "through-worker-0", "through-worker-1"]
    );
}

/// SIGCONT for etcd however the test ends.
struct Resume;

impl Drop for Resume {
    fn drop(&mut self) {
        Component { name: "etcd" }.signal(libc::SIGCONT);
    }
}

/// 4. etcd paused (SIGSTOP) for 10 s while the pods are being created:
/// no pod is created twice, and the job succeeds.
#[tokio::test]
async fn an_etcd_pause_during_pod_creation_duplicates_nothing() {
    let _one_at_a_time = SERIAL.lock().await;
    let e2e = E2e::get().await;
    let ns = e2e.namespace("fault-etcd").await;
    let ever = every_pod_ever(e2e.pods(&ns.name));
    let mut job = sleeping_job(&ns.name, "paused", "1");
    job["spec"]["worker"]["replicas"] = json!(8);
    job["spec"]["worker"]["cmd"] = json!(["hostname"]);
    e2e.create(&ns.name, job).await;
    {
        let _resume = Resume;
        Component { name: "etcd" }.signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let s = e2e
        .wait_phase(
            &ns.name,
            "paused",
            Phase::Succeeded,
            Duration::from_secs(600),
        )
        .await;
    assert_eq!(
        s.task(&mpijob_api::t9k::v1beta1::ReplicaType::Worker)
            .unwrap()
            .replicas
            .len(),
        8
    );
    let ever: Vec<String> = ever.lock().unwrap().iter().cloned().collect();
    let names: BTreeSet<&str> = ever.iter().map(|k| k.split('/').next().unwrap()).collect();
    assert_eq!(
        (ever.len(), names.len()),
        (9, 9),
        "pods ever created (name/uid): {ever:?}"
    );
}

/// 5. kubelet restarted while a job runs: the pods keep running (no
/// container restarts), and the job succeeds.
#[tokio::test]
async fn a_kubelet_restart_leaves_the_pods_running() {
    let _one_at_a_time = SERIAL.lock().await;
    let r = Running::start("fault-kubelet", "steady", |ns| {
        sleeping_job(ns, "steady", "30.5")
    })
    .await;
    restart("kubelet").await;
    r.e2e
        .wait_phase(&r.ns.name, "steady", Phase::Succeeded, T)
        .await;
    for p in r.pods.list(&ListParams::default()).await.unwrap().items {
        let restarts: Vec<i32> = p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .collect();
        assert!(
            restarts.iter().all(|n| *n == 0),
            "{}: {restarts:?}",
            p.metadata.name.unwrap_or_default()
        );
    }
    assert_eq!(
        r.ever(),
        ["steady-launcher", "steady-worker-0", "steady-worker-1"]
    );
}
