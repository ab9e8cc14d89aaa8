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
//! Kubeflow: `kubectl apply` of `examples/kubeflow/pi.yaml` on the
//! Kubeflow-style Open MPI 4 image until its Succeeded condition, as a
//! ratio to the T9k job's time.

use std::time::{Duration, Instant};

use kube::api::LogParams;
use kube::Api;
use mpijob_api::kubeflow;
use mpijob_api::v1beta1::Phase;
use mpijob_tests::e2e::{
    kubeflow_pi_example, log_time, pi_example, state_dir, E2e, KUBEFLOW_OPENMPI4_IMAGE,
    OPENMPI_IMAGE,
};
use mpijob_tests::namespace::delete_and_wait;
use serde_json::{json, Value};

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
    operator_round(&e2e, "warm").await;
    by_hand_round(&e2e, "warm").await;
    kubeflow_round(&e2e, "warm").await;
    let (mut operator, mut by_hand, mut reaction, mut kubeflow) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let (t, r) = operator_round(&e2e, &i.to_string()).await;
        let h = by_hand_round(&e2e, &i.to_string()).await;
        let k = kubeflow_round(&e2e, &i.to_string()).await;
        println!(
            "round {i}: operator {:.2} s (launcher reaction {:.0} ms), by hand {:.2} s, Kubeflow {:.2} s",
            t.as_secs_f64(),
            r * 1000.0,
            h.as_secs_f64(),
            k.as_secs_f64()
        );
        operator.push(t.as_secs_f64());
        by_hand.push(h.as_secs_f64());
        reaction.push(r);
        kubeflow.push(k.as_secs_f64());
    }
    let (o, h, r) = (median(operator), median(by_hand), median(reaction));
    let k = median(kubeflow);
    println!("pi, 2 workers, Open MPI, median of {rounds}:");
    println!("  kubectl apply -> MPIJob Succeeded (operator): {o:.2} s");
    println!("  kubectl apply -> launcher Succeeded (by hand): {h:.2} s");
    println!("  ratio operator / by hand: {:.2}", o / h);
    println!("  kubectl apply -> Kubeflow MPIJob Succeeded (kubeflow-openmpi4): {k:.2} s");
    println!("  ratio Kubeflow / T9k: {:.2}", k / o);
    println!(
        "  launcher reaction (later worker's sshd ready -> mpirun start): {:.0} ms",
        r * 1000.0
    );
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

async fn operator_round(e2e: &E2e, tag: &str) -> (Duration, f64) {
    let ns = e2e.namespace(&format!("bench-op-{tag}")).await;
    let mut job = pi_example(&ns.name, OPENMPI_IMAGE);
    // Kept (and finished) workers keep their logs for the reaction time.
    job["spec"]["runPolicy"]["cleanUpWorkers"] = json!("none");
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
    let mpirun = first_stamp(e2e, &ns.name, "pi-launcher", "mpirun").await;
    let mut sshd = Vec::new();
    for w in ["pi-worker-0", "pi-worker-1"] {
        if let Some(t) = first_stamp(e2e, &ns.name, w, "ready: sshd accepts connections").await {
            sshd.push(t);
        }
    }
    let reaction = match (mpirun, sshd.len()) {
        (Some(m), 2) => m - sshd.iter().cloned().fold(f64::MIN, f64::max),
        _ => f64::NAN,
    };
    delete_and_wait(&e2e.client, &ns.name).await;
    (took, reaction)
}

/// The Kubeflow pi (`examples/kubeflow/pi.yaml` on the Kubeflow-style Open
/// MPI 4 image): `kubectl apply` until its Succeeded condition is True.
async fn kubeflow_round(e2e: &E2e, tag: &str) -> Duration {
    let ns = e2e.namespace(&format!("bench-kf-{tag}")).await;
    let job = kubeflow_pi_example(&ns.name, KUBEFLOW_OPENMPI4_IMAGE);
    let start = Instant::now();
    apply(e2e, &ns.name, &job);
    let jobs: Api<kubeflow::MPIJob> = Api::namespaced(e2e.client.clone(), &ns.name);
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
async fn by_hand_round(e2e: &E2e, tag: &str) -> Duration {
    let ns = e2e.namespace(&format!("bench-hand-{tag}")).await;
    let key = mpijob_api::sshkey::generate("bench");
    let n = &ns.name;
    let svc = "hand";
    let host = |i: u32| format!("hand-worker-{i}.{svc}.{n}.svc.cluster.local");
    let worker_setup = "set -e; mkdir -p /run/sshd /root/.ssh; \
        cp /etc/bench-key/pub /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys; \
        exec /usr/sbin/sshd -D -e -p 2222 -o PermitRootLogin=prohibit-password";
    let launcher_script = format!(
        "set -e; mkdir -p /root/.ssh; cp /etc/bench-key/key /root/.ssh/id_ed25519; \
         chmod 600 /root/.ssh/id_ed25519; \
         printf 'Host *\\n  Port 2222\\n  StrictHostKeyChecking no\\n  UserKnownHostsFile /dev/null\\n  LogLevel ERROR\\n' > /root/.ssh/config; \
         for h in {h0} {h1}; do until ssh -o ConnectTimeout=1 $h true; do sleep 0.1; done; done; \
         exec mpirun --allow-run-as-root --mca orte_keep_fqdn_hostnames 1 -H {h0},{h1} -np 2 /opt/mpi-examples/pi",
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
    delete_and_wait(&e2e.client, n).await;
    took
}
