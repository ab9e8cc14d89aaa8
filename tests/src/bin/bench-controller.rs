//! Controller scale benchmark, against the kube-apiserver harness.
//!
//! 1. The limit: a plain client does the same creates as the controller
//!    and the user together, with the controller's own objects (its pure
//!    builders) and concurrency: one task per job, all tasks at once, each
//!    creating its MPIJob, then its Secret (with a new key) and Service
//!    together, then its WORKERS + 1 pods, at most 32 at once.
//!    It writes no status: that is the controller's own cost.
//! 2. The controller (the release binary, as a separate process) is given
//!    JOBS MPIJobs with WORKERS workers each, created all at once; the clock
//!    stops when every child (Secret, Service, every pod) exists, as lists
//!    of their metadata every 100 ms see them.
//!
//! Prints both times and their ratio, the controller's API writes per job
//! (from its /metrics) and its peak resident memory (VmHWM).
//!
//! Run it with `scripts/bench-controller.sh`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use mpijob_api::contract::labels;
use mpijob_api::MPIJob;
use mpijob_controller::core::apply::MAX_IN_FLIGHT;
use mpijob_controller::core::meta::JobMeta;
use mpijob_controller::t9k::build::{self, pod, roles};
use mpijob_tests::namespace::delete_and_wait;
use mpijob_tests::{crds, Harness, TestNamespace};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn job(name: &str, workers: usize) -> MPIJob {
    let mut j = mpijob_tests::fixtures::pi_job(name);
    j["spec"]["worker"]["replicas"] = json!(workers);
    serde_json::from_value(j).unwrap()
}

/// How many objects with the job label exist, from a list of their
/// metadata only: polling full lists of hundreds of pods every few
/// milliseconds would load the API server and slow the very creates being
/// timed.
async fn count<K>(api: &Api<K>) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(&ListParams::default().labels("batch.tensorstack.dev/mpi-job-name"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One controller run's figures.
struct ControllerRun {
    elapsed: Duration,
    writes: [f64; 4],
    /// Reconciles run, per job.
    reconciles: f64,
    cpu: Option<f64>,
    hwm_kib: Option<u64>,
}

#[tokio::main]
async fn main() {
    let jobs = env_or("BENCH_JOBS", 100);
    let workers = env_or("BENCH_WORKERS", 8);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let h = Harness::get();
    let client: Client = h.client().await;
    crds::install(&client).await;
    println!(
        "controller scale: {jobs} MPIJobs x {workers} workers ({} pods), {rounds} rounds, order alternating",
        jobs * (workers + 1)
    );
    let mut plain = Vec::new();
    let mut ctl = Vec::new();
    for round in 0..rounds {
        // Alternate which goes first, so that neither always runs on a
        // machine still busy with the other's clean-up.
        for controller_turn in [round % 2 == 1, round % 2 == 0] {
            if controller_turn {
                let r = controller_run(&h, &client, jobs, workers).await;
                println!(
                    "  round {round}: controller {:>6.2} s",
                    r.elapsed.as_secs_f64()
                );
                ctl.push(r);
            } else {
                let t = plain_run(&h, &client, jobs, workers).await;
                println!("  round {round}: plain      {:>6.2} s", t.as_secs_f64());
                plain.push(t);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let p = median(plain.iter().map(Duration::as_secs_f64).collect());
    let c = median(ctl.iter().map(|r| r.elapsed.as_secs_f64()).collect());
    println!("plain client (median):  {p:>6.2} s  (the same MPIJobs, Secrets, Services and pods, same concurrency)");
    println!("controller (median):    {c:>6.2} s  (until every Secret, Service and pod exists)");
    println!("ratio controller / plain: {:.2} (target <= 1.1)", c / p);
    let last = ctl.last().expect("at least one round");
    let [cr, st, ev, cl] = last.writes;
    println!(
        "API writes per job:     {:>6.1}  ({cr:.1} creates for {} children, {st:.1} status patches, {ev:.1} events, {cl:.1} clean-ups)",
        cr + st + ev + cl,
        workers + 3
    );
    println!(
        "reconciles per job:     {:>6.1}  (each child's watch event can trigger one)",
        last.reconciles
    );
    if let Some(cpu) = last.cpu {
        println!("controller CPU time:    {cpu:>6.2} s  (user + system, one round)");
    }
    let hwm = ctl.iter().filter_map(|r| r.hwm_kib).max();
    match hwm {
        Some(kib) => println!("controller peak RSS:    {:>6.1} MiB", kib as f64 / 1024.0),
        None => println!("controller peak RSS:    unknown"),
    }
}

/// The limit: the controller's objects from a plain client, at its
/// concurrency (see the top of this file).
async fn plain_run(h: &Harness, client: &Client, jobs: usize, workers: usize) -> Duration {
    let ns = TestNamespace::new(client, h, "bench-plain").await;
    // A fresh client, with no warm connections, as the controller starts.
    let fresh = h.client().await;
    let config = mpijob_controller::Config {
        agent_image: "mpijob/agent:bench".into(),
        agent_image_pull_policy: "IfNotPresent".into(),
    };
    let (config, ns_name) = (&config, ns.name.as_str());
    let start = Instant::now();
    join_all((0..jobs).map(|j| {
        let client = fresh.clone();
        async move {
            let jobs: Api<MPIJob> = Api::namespaced(client.clone(), ns_name);
            let secrets: Api<Secret> = Api::namespaced(client.clone(), ns_name);
            let services: Api<Service> = Api::namespaced(client.clone(), ns_name);
            let pods: Api<Pod> = Api::namespaced(client, ns_name);
            let pp = PostParams::default();
            let created = jobs
                .create(&pp, &job(&format!("b{j}"), workers))
                .await
                .unwrap();
            // Validated, normalised and typed, as the controller takes it.
            let job = mpijob_api::t9k::resolve(&created).unwrap();
            let meta = JobMeta::of(&created, labels::JOB_NAME).unwrap();
            let key = mpijob_api::sshkey::generate(&format!("mpijob:{ns_name}/b{j}"));
            let secret = build::secret::secret(&meta, &key, &job.spec.ssh.ssh_auth_mount_path);
            let service = build::service::service(&meta);
            let (a, b) = tokio::join!(secrets.create(&pp, &secret), services.create(&pp, &service));
            a.unwrap();
            b.unwrap();
            let (job, meta, pods, pp) = (&job, &meta, &pods, &pp);
            futures::stream::iter(roles(job.workers))
                .map(|role| async move {
                    let p = pod::pod(job, meta, role, config, false);
                    pods.create(pp, &p).await.map(|_| ())
                })
                .buffer_unordered(MAX_IN_FLIGHT)
                .try_collect::<Vec<()>>()
                .await
                .unwrap();
        }
    }))
    .await;
    let elapsed = start.elapsed();
    delete_and_wait(client, &ns.name).await;
    elapsed
}

/// The controller, as its own process, given every job at once.
async fn controller_run(
    h: &Harness,
    client: &Client,
    jobs: usize,
    workers: usize,
) -> ControllerRun {
    let ns = TestNamespace::new(client, h, "bench-ctl").await;
    let binary = std::env::var("MPIJOB_CONTROLLER_BIN")
        .expect("MPIJOB_CONTROLLER_BIN: the release mpijob-controller");
    let port = free_port();
    let child = Command::new(&binary)
        .args([
            "run",
            "--agent-image",
            "mpijob/agent:bench",
            "--namespace",
            &ns.name,
        ])
        .arg("--health-addr")
        .arg(format!("127.0.0.1:{port}"))
        .env("KUBECONFIG", &h.kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(std::env::temp_dir().join("bench-controller.log")).unwrap())
        .spawn()
        .unwrap();
    let controller = Controller(child);
    let pid = controller.0.id();
    for _ in 0..200 {
        if http_get(port, "/readyz")
            .await
            .is_some_and(|b| b.starts_with("ok"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let api: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let job_pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let start = Instant::now();
    join_all((0..jobs).map(|j| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &job(&format!("b{j}"), workers))
                .await
                .unwrap();
        }
    }))
    .await;
    let want_pods = jobs * (workers + 1);
    loop {
        let (p, s, v) = tokio::join!(count(&job_pods), count(&secrets), count(&services));
        if p == want_pods && s == jobs && v == jobs {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            panic!("after 600 s: {p}/{want_pods} pods, {s}/{jobs} secrets, {v}/{jobs} services");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = start.elapsed();

    // Let status writes settle, then read the write counters.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let body = http_get(port, "/metrics").await.unwrap_or_default();
    let per_job_of = |prefix: &str| -> f64 {
        let n: f64 = body
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN);
        n / jobs as f64
    };
    let per_job = |kind: &str| per_job_of(&format!("mpijob_api_writes_total{{kind=\"{kind}\"}} "));
    let run = ControllerRun {
        elapsed,
        writes: [
            per_job("create"),
            per_job("status"),
            per_job("event"),
            per_job("cleanup"),
        ],
        reconciles: per_job_of("mpijob_reconciles_total "),
        cpu: cpu_seconds(pid),
        hwm_kib: vm_hwm_kib(pid),
    };
    drop(controller);
    delete_and_wait(client, &ns.name).await;
    run
}

/// A minimal HTTP GET on loopback, for the controller's /metrics.
async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}
