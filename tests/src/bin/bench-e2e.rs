//! End-to-end benchmark on the e2e cluster (`scripts/bench-e2e.sh`).
//!
//! Operator: `kubectl apply` of `examples/pi/pi.yaml` until the MPIJob is
//! `Succeeded`. By hand: the same job as a user would write it without an
//! operator, with the same image: a Secret with a key, a headless Service,
//! two worker pods running `sshd -D` after a hand-written setup, and a
//! launcher pod that loops on `ssh` until both workers answer and then runs
//! mpirun; timed from `kubectl apply` until the launcher pod has
//! Succeeded. The rounds alternate, each in a fresh namespace; medians and
//! their ratio are printed, with the operator launcher's reaction time
//! (from the later worker's sshd accepting connections to mpirun starting).
//!
//! Where the time goes, on both sides, from the launcher's point of view
//! (the path to mpirun): `kubectl apply` until the launcher pod exists
//! (kubectl itself, and for the operator its reconcile), until it is
//! scheduled, until its init container (which copies the agent) is seen
//! done, until its main container runs (up to the launcher's first log
//! line), its wait for the workers until mpirun starts (and the reaction,
//! from the later worker's sshd ready), mpirun until the launcher's last
//! log line, and from there until the job is seen done (the kubelet
//! noticing the exit, and for the operator its status write). Pod events come from a watch the bench
//! holds (millisecond clock; the API's own timestamps have seconds only),
//! log lines from the kubelet's and the agent's stamps, all on this
//! machine's clock.
//! Kubeflow: `kubectl apply` of `examples/kubeflow/pi.yaml` on the
//! Kubeflow-style Open MPI 4 image until its Succeeded condition, as a
//! ratio to the T9k job's time. Baked: the pi example on the same image
//! with the agent baked in (images/baked), annotated so: no init
//! container.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use mpijob_api::kubeflow;
use mpijob_api::t9k::v1beta1::Phase;
use mpijob_tests::e2e::{
    kubeflow_pi_example, log_time, pi_example, state_dir, KUBEFLOW_OPENMPI4_IMAGE,
    OPENMPI_BAKED_IMAGE, OPENMPI_IMAGE,
};
use mpijob_tests::namespace::delete_and_wait;
use serde_json::{json, Value};

type E2e = mpijob_tests::e2e::E2e<mpijob_api::MPIJob>;

const ROUNDS: usize = 5;

#[tokio::main]
async fn main() {
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    let e2e = E2e::get().await;
    // One warm-up of each, not counted: the first pods of an image pay for
    // its first container start on the node.
    operator_round(&e2e, "warm", Agent::Copied).await;
    operator_round(&e2e, "warm-baked", Agent::Baked).await;
    by_hand_round(&e2e, "warm").await;
    kubeflow_round(&e2e, "warm").await;
    let (mut operator, mut by_hand, mut reaction, mut kubeflow) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut op_split, mut hand_split) = (Vec::new(), Vec::new());
    let (mut baked, mut baked_split) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let (t, r, os) = operator_round(&e2e, &i.to_string(), Agent::Copied).await;
        let (b, _, bs) = operator_round(&e2e, &format!("{i}-baked"), Agent::Baked).await;
        let (h, hs) = by_hand_round(&e2e, &i.to_string()).await;
        let k = kubeflow_round(&e2e, &i.to_string()).await;
        println!(
            "round {i}: operator {:.2} s (launcher reaction {:.0} ms), baked {:.2} s, by hand {:.2} s, Kubeflow {:.2} s",
            t.as_secs_f64(),
            r * 1000.0,
            b.as_secs_f64(),
            h.as_secs_f64(),
            k.as_secs_f64()
        );
        println!("  {:<9} {}", "", Split::HEADER);
        println!("  {:<9} {}", "operator", os.line());
        println!("  {:<9} {}", "baked", bs.line());
        println!("  {:<9} {}", "by hand", hs.line());
        operator.push(t.as_secs_f64());
        by_hand.push(h.as_secs_f64());
        reaction.push(r);
        kubeflow.push(k.as_secs_f64());
        op_split.push(os);
        hand_split.push(hs);
        baked.push(b.as_secs_f64());
        baked_split.push(bs);
    }
    let (o, h, r) = (median(operator), median(by_hand), median(reaction));
    let k = median(kubeflow);
    println!("pi, 2 workers, Open MPI, median of {rounds}:");
    println!("  kubectl apply -> MPIJob Succeeded (operator): {o:.2} s");
    println!("  kubectl apply -> launcher Succeeded (by hand): {h:.2} s");
    println!("  ratio operator / by hand: {:.2}", o / h);
    let b = median(baked);
    println!("  kubectl apply -> MPIJob Succeeded, agent baked into the image: {b:.2} s");
    println!("  ratio baked / by hand: {:.2}", b / h);
    println!("  kubectl apply -> Kubeflow MPIJob Succeeded (kubeflow-openmpi4): {k:.2} s");
    println!("  ratio Kubeflow / T9k: {:.2}", k / o);
    println!(
        "  launcher reaction (later worker's sshd ready -> mpirun start): {:.0} ms",
        r * 1000.0
    );
    println!("where the time goes, launcher's path, median of each step in ms:");
    println!("  {:<9} {}", "", Split::HEADER);
    println!("  {:<9} {}", "operator", Split::median(&op_split).line());
    println!("  {:<9} {}", "baked", Split::median(&baked_split).line());
    println!("  {:<9} {}", "by hand", Split::median(&hand_split).line());
}

/// Seconds of the day, the clock of the log stamps (`log_time`).
fn now_of_day() -> f64 {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    t.as_secs_f64() % 86400.0
}

/// When the bench's watch first saw each pod exist and be scheduled
/// (seconds of the day).
#[derive(Default, Clone, Copy, Debug)]
struct Seen {
    created: Option<f64>,
    scheduled: Option<f64>,
    /// Every init container terminated (only pods that have one).
    init_done: Option<f64>,
}

/// The bench's watch of one namespace's pods: when each pod was first
/// seen, and first seen scheduled. Stops when dropped.
struct PodWatch {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    /// Watch `ns` from now on; returns once the watch is listening.
    async fn start(e2e: &E2e, ns: &str) -> PodWatch {
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let noted = seen.clone();
        let api: Api<Pod> = e2e.pods(ns);
        let (ready, listening) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready);
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let now = now_of_day();
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        let mut m = noted.lock().unwrap();
                        let s = m.entry(p.name_any()).or_default();
                        s.created.get_or_insert(now);
                        if p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
                            s.scheduled.get_or_insert(now);
                        }
                        let inits = p
                            .status
                            .as_ref()
                            .and_then(|s| s.init_container_statuses.as_ref())
                            .filter(|i| !i.is_empty());
                        let all_done = |i: &Vec<k8s_openapi::api::core::v1::ContainerStatus>| {
                            i.iter()
                                .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
                        };
                        if inits.is_some_and(all_done) {
                            s.init_done.get_or_insert(now);
                        }
                    }
                    _ => {}
                }
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), listening).await;
        PodWatch { seen, task }
    }

    fn of(&self, pod: &str) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .get(pod)
            .copied()
            .unwrap_or_default()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One round's time by step on the launcher's path, in ms; NaN where a
/// stamp is missing (no init container, or no worker log to react to).
#[derive(Clone, Copy, Debug)]
struct Split([f64; 8]);

/// The stamps of one round, in seconds of the day.
struct Stamps {
    applied: f64,
    launcher: Seen,
    /// The launcher's first log line, its mpirun start, its last line.
    started: Option<f64>,
    mpirun: Option<f64>,
    ended: Option<f64>,
    /// The later worker's sshd ready, where the workers log it.
    workers_ready: Option<f64>,
    done: f64,
}

impl Split {
    const HEADER: &str = "apply->pod  scheduling  init  container  wait (reaction)  mpirun  status";

    fn new(t: &Stamps) -> Split {
        let d = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (b - a) * 1000.0,
            _ => f64::NAN,
        };
        let l = &t.launcher;
        Split([
            d(Some(t.applied), l.created),
            d(l.created, l.scheduled),
            d(l.scheduled, l.init_done),
            d(l.init_done.or(l.scheduled), t.started),
            d(t.started, t.mpirun),
            d(t.workers_ready, t.mpirun),
            d(t.mpirun, t.ended),
            d(t.ended, Some(t.done)),
        ])
    }

    fn median(all: &[Split]) -> Split {
        let mut m = [0.0; 8];
        for (i, v) in m.iter_mut().enumerate() {
            let col: Vec<f64> = all.iter().map(|s| s.0[i]).filter(|x| !x.is_nan()).collect();
            *v = if col.is_empty() {
                f64::NAN
            } else {
                median(col)
            };
        }
        Split(m)
    }

    fn line(&self) -> String {
        let [a, s, i, c, w, r, m, d] = self.0;
        format!("{a:>10.0}  {s:>10.0}  {i:>4.0}  {c:>9.0}  {w:>4.0} ({r:>6.0})  {m:>6.0}  {d:>6.0}")
    }
}

/// How the pods get the agent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Agent {
    /// The init container copies it (the pi example as it is).
    Copied,
    /// The image has it (images/baked), and the job says so.
    Baked,
}

/// The launcher's log: its first line, the agent's mpirun start, its last
/// line (mpirun's end, reported).
async fn launcher_stamps(e2e: &E2e, ns: &str, pod: &str, mpirun: &str) -> [Option<f64>; 3] {
    let log = e2e.stamped_logs(ns, pod).await;
    let mut lines = log.lines().filter(|l| !l.trim().is_empty());
    let first = lines.clone().next().and_then(log_time);
    let start = lines
        .clone()
        .find(|l| l.contains(mpirun))
        .and_then(log_time);
    let last = lines.next_back().and_then(log_time);
    [first, start, last]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// `kubectl apply -f FILE` with the e2e cluster's kubectl.
fn apply(e2e: &E2e, name: &str, doc: &Value) {
    let file = state_dir().join(format!("bench-{name}.json"));
    std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
    e2e.harness
        .kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
}

async fn operator_round(e2e: &E2e, tag: &str, agent: Agent) -> (Duration, f64, Split) {
    let ns = e2e.namespace(&format!("bench-op-{tag}")).await;
    let mut job = match agent {
        Agent::Copied => pi_example(&ns.name, OPENMPI_IMAGE),
        Agent::Baked => {
            let mut job = pi_example(&ns.name, OPENMPI_BAKED_IMAGE);
            job["metadata"]["annotations"] = json!({
                mpijob_api::contract::AGENT_IN_IMAGE_ANNOTATION: mpijob_api::contract::VERSION
            });
            job
        }
    };
    // Kept (and finished) workers keep their logs for the reaction time.
    job["spec"]["runPolicy"]["cleanUpWorkers"] = json!("none");
    let watch = PodWatch::start(e2e, &ns.name).await;
    let applied = now_of_day();
    let start = Instant::now();
    apply(e2e, &ns.name, &job);
    let jobs = e2e.jobs(&ns.name);
    loop {
        let phase = jobs.get("pi").await.unwrap().status.and_then(|s| s.phase);
        match phase {
            Some(Phase::Succeeded) => break,
            Some(Phase::Failed) => panic!("the MPIJob failed:\n{}", e2e.describe(&ns.name).await),
            _ if start.elapsed() > Duration::from_secs(300) => {
                panic!("the MPIJob did not finish in 300 s")
            }
            // The same polling as the hand-written job's.
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let took = start.elapsed();
    let done = now_of_day();
    // The agent's "starting /usr/bin/mpirun …" (its first line names
    // mpirun too, as "launcher starting: … mpirun=…").
    let [started, mpirun, ended] =
        launcher_stamps(e2e, &ns.name, "pi-launcher", " starting /").await;
    let mut sshd = Vec::new();
    for w in ["pi-worker-0", "pi-worker-1"] {
        if let Some(t) = first_stamp(e2e, &ns.name, w, "ready: sshd accepts connections").await {
            sshd.push(t);
        }
    }
    let workers_ready = (sshd.len() == 2).then(|| sshd.iter().cloned().fold(f64::MIN, f64::max));
    let reaction = match (mpirun, workers_ready) {
        (Some(m), Some(w)) => m - w,
        _ => f64::NAN,
    };
    let split = Split::new(&Stamps {
        applied,
        launcher: watch.of("pi-launcher"),
        started,
        mpirun,
        ended,
        workers_ready,
        done,
    });
    delete_and_wait(&e2e.client, &ns.name).await;
    (took, reaction, split)
}

/// The Kubeflow pi (`examples/kubeflow/pi.yaml` on the Kubeflow-style Open
/// MPI 4 image): `kubectl apply` until its Succeeded condition is True.
async fn kubeflow_round(e2e: &E2e, tag: &str) -> Duration {
    let ns = e2e.namespace(&format!("bench-kf-{tag}")).await;
    let job = kubeflow_pi_example(&ns.name, KUBEFLOW_OPENMPI4_IMAGE);
    let start = Instant::now();
    apply(e2e, &ns.name, &job);
    let jobs = e2e.of::<kubeflow::MPIJob>().jobs(&ns.name);
    loop {
        let s = jobs.get("pi").await.unwrap().status.unwrap_or_default();
        if s.is_true("Succeeded") {
            break;
        }
        if s.is_true("Failed") {
            panic!(
                "the Kubeflow MPIJob failed:\n{}",
                e2e.describe(&ns.name).await
            );
        }
        if start.elapsed() > Duration::from_secs(300) {
            panic!("the Kubeflow MPIJob did not finish in 300 s");
        }
        // The same polling as the other rounds'.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    delete_and_wait(&e2e.client, &ns.name).await;
    took
}

/// When the first line of `pod`'s log that contains `what` was written
/// (seconds of the day).
async fn first_stamp(e2e: &E2e, ns: &str, pod: &str, what: &str) -> Option<f64> {
    let log = e2e.stamped_logs(ns, pod).await;
    log.lines().find(|l| l.contains(what)).and_then(log_time)
}

/// The hand-written equivalent of the pi job.
async fn by_hand_round(e2e: &E2e, tag: &str) -> (Duration, Split) {
    let ns = e2e.namespace(&format!("bench-hand-{tag}")).await;
    let key = mpijob_api::sshkey::generate("bench");
    let n = &ns.name;
    let svc = "hand";
    let host = |i: u32| format!("hand-worker-{i}.{svc}.{n}.svc.cluster.local");
    let worker_setup = "set -e; mkdir -p /run/sshd /root/.ssh; \
        cp /etc/bench-key/pub /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys; \
        exec /usr/sbin/sshd -D -e -p 2222 -o PermitRootLogin=prohibit-password";
    // Two echoes mark the container's start and mpirun's for the split.
    let launcher_script = format!(
        "set -e; echo started; mkdir -p /root/.ssh; cp /etc/bench-key/key /root/.ssh/id_ed25519; \
         chmod 600 /root/.ssh/id_ed25519; \
         printf 'Host *\\n  Port 2222\\n  StrictHostKeyChecking no\\n  UserKnownHostsFile /dev/null\\n  LogLevel ERROR\\n' > /root/.ssh/config; \
         for h in {h0} {h1}; do until ssh -o ConnectTimeout=1 $h true; do sleep 0.1; done; done; \
         echo mpirun; exec mpirun --allow-run-as-root --mca orte_keep_fqdn_hostnames 1 -H {h0},{h1} -np 2 /opt/mpi-examples/pi",
        h0 = host(0),
        h1 = host(1)
    );
    let pod = |name: &str, script: &str, labels: Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": n, "labels": labels},
            "spec": {
                "hostname": name, "subdomain": svc, "restartPolicy": "Never",
                "containers": [{
                    "name": "mpi", "image": OPENMPI_IMAGE, "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
                    "volumeMounts": [{"name": "key", "mountPath": "/etc/bench-key", "readOnly": true}]
                }],
                "volumes": [{"name": "key", "secret": {"secretName": "hand-key", "defaultMode": 256}}]
            }
        })
    };
    let list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hand-key", "namespace": n},
         "stringData": {"key": key.private_pem(), "pub": key.public_openssh()}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": n},
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": true,
                  "selector": {"bench": "hand"}, "ports": [{"name": "ssh", "port": 2222}]}},
        pod("hand-worker-0", worker_setup, json!({"bench": "hand"})),
        pod("hand-worker-1", worker_setup, json!({"bench": "hand"})),
        pod("hand-launcher", &launcher_script, json!({"bench": "hand"})),
    ]});
    let watch = PodWatch::start(e2e, n).await;
    let applied = now_of_day();
    let start = Instant::now();
    apply(e2e, n, &list);
    let pods = e2e.pods(n);
    loop {
        let p = pods.get("hand-launcher").await.unwrap();
        match p.status.and_then(|s| s.phase).as_deref() {
            Some("Succeeded") => break,
            Some("Failed") => panic!(
                "the hand-written launcher failed:\n{}",
                pods.logs("hand-launcher", &LogParams::default())
                    .await
                    .unwrap_or_default()
            ),
            _ if start.elapsed() > Duration::from_secs(300) => {
                panic!("the hand-written launcher did not finish in 300 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let took = start.elapsed();
    let done = now_of_day();
    let [started, mpirun, ended] = launcher_stamps(e2e, n, "hand-launcher", "mpirun").await;
    // The hand-written workers log nothing when sshd is up.
    let split = Split::new(&Stamps {
        applied,
        launcher: watch.of("hand-launcher"),
        started,
        mpirun,
        ended,
        workers_ready: None,
        done,
    });
    delete_and_wait(&e2e.client, n).await;
    (took, split)
}
