//! Test data shared by the integration tests.

use serde_json::{json, Value};

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
