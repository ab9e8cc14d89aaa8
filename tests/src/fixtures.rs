//! Test data shared by the integration tests.

use std::path::PathBuf;

use serde_json::{json, Value};

/// The path of one of the project's own manifests under
/// `tests/fixtures/manifests/` (e.g. `t9k/seed-slots-gpus.yaml`; what each
/// stands for is in that folder's README).
pub fn fixture_path(rel: &str) -> PathBuf {
    let path = crate::cluster::repo_root()
        .join("tests/fixtures/manifests")
        .join(rel);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// One of the project's own manifests (see [`fixture_path`]), parsed.
pub fn fixture_manifest(rel: &str) -> Value {
    parse(&fixture_path(rel))
}

/// The path of a real user's manifest under `../shared/peers/` (beside the
/// repo), e.g. `kubeflow/pi.yaml`, for the `peer_` checks; panics, saying
/// what is missing, without it.
pub fn peer_path(rel: &str) -> PathBuf {
    let path = crate::cluster::repo_root()
        .join("../shared/peers")
        .join(rel);
    assert!(
        path.is_file(),
        "{} is missing: this test needs ../shared beside the repo",
        path.display()
    );
    path
}

/// A real user's manifest (see [`peer_path`]), parsed.
pub fn peer_manifest(rel: &str) -> Value {
    parse(&peer_path(rel))
}

fn parse(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    mpijob_api::yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A valid MPIJob named `name`: two workers running the pi example.
pub fn pi_job(name: &str) -> Value {
    json!({
        "apiVersion": "batch.tensorstack.dev/v1beta1",
        "kind": "MPIJob",
        "metadata": {"name": name},
        "spec": {
            "worker": {
                "replicas": 2,
                "cmd": ["/opt/mpi-examples/pi", "1000"],
                "template": {"spec": {"containers": [{"name": "mpi-worker", "image": "mpijob/openmpi:test"}]}}
            }
        }
    })
}

/// A valid Kubeflow MPIJob named `name`: a launcher running mpirun and two
/// workers running the image's sshd, as Kubeflow's pi example.
pub fn kubeflow_pi_job(name: &str) -> Value {
    json!({
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": name},
        "spec": {
            "slotsPerWorker": 1,
            "runPolicy": {"cleanPodPolicy": "Running"},
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "template": {"spec": {"containers": [{
                        "name": "mpi-launcher", "image": "mpijob/openmpi:test",
                        "command": ["mpirun"], "args": ["-n", "2", "/opt/mpi-examples/pi"]
                    }]}}
                },
                "Worker": {
                    "replicas": 2,
                    "template": {"spec": {"containers": [{"name": "mpi-worker", "image": "mpijob/openmpi:test"}]}}
                }
            }
        }
    })
}
