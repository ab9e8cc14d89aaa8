//! Hand-written schema pieces for the CRD.
//!
//! **Why the pod template is only outlined.** The full PodTemplateSpec
//! schema from k8s-openapi is several hundred kilobytes of JSON. A CRD
//! installed with client-side `kubectl apply` carries its whole body in the
//! `last-applied-configuration` annotation, which is limited to 256 KiB, so
//! embedding it would make `kubectl apply -f crds/` fail. The template is
//! therefore described down to its containers' names and images, with
//! `x-kubernetes-preserve-unknown-fields` below that. Nothing is lost: the
//! controller parses the template when it validates the job (reporting the
//! exact field), and the API server validates every Pod built from it.

use schemars::{json_schema, Schema, SchemaGenerator};

/// The outline of `spec.worker.template`.
pub fn pod_template() -> Schema {
    pod_template_outline(
        "The pod template for the workers and the launcher (a core/v1 PodTemplateSpec). The MPI container is the one named mpi-worker, or the first container.",
        "The pod's containers. The MPI container is the one named mpi-worker, or the first.",
    )
}

/// The outline of a Kubeflow replica's `template`.
pub fn kubeflow_pod_template(_: &mut SchemaGenerator) -> Schema {
    pod_template_outline(
        "The replica's pod template (a core/v1 PodTemplateSpec). The first container runs the MPI program: mpirun on the launcher, sshd on the workers.",
        "The pod's containers. The first one is the MPI container, which gets the ssh keys and the environment.",
    )
}

/// A PodTemplateSpec down to its containers' names and images.
fn pod_template_outline(description: &str, containers: &str) -> Schema {
    let description = format!("{description} Fields below spec.containers[] are not listed here; the API server validates them when the pods are created.");
    json_schema!({
        "type": "object",
        "description": description,
        "properties": {
            "metadata": {
                "type": "object",
                "description": "Labels and annotations for the job's pods.",
                "x-kubernetes-preserve-unknown-fields": true
            },
            "spec": {
                "type": "object",
                "description": "A core/v1 PodSpec.",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "containers": {
                        "type": "array",
                        "description": containers,
                        "items": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "description": "The container's name."},
                                "image": {"type": "string", "description": "The container image, with MPI and openssh-server installed."}
                            }
                        }
                    }
                }
            }
        }
    })
}

/// `spec.runPolicy.cleanUpWorkers`: a boolean or a string. A structural
/// schema cannot give a node two types, so the value is left open here and
/// checked by validation, which names the accepted forms.
pub fn clean_up_workers(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Which workers to delete when the job ends: \"all\", \"unfinished\" or \"none\". The older boolean form is accepted: true means \"all\", false means \"none\".",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// `status.phase`: a plain string enum (no `null` member, which the derived
/// schema of an optional enum would add).
pub fn phase(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Where the job is in its life: Pending, Running, Paused, Resuming, Succeeded, Failed or Unknown.",
        "type": "string",
        "enum": ["Pending", "Running", "Paused", "Resuming", "Succeeded", "Failed", "Unknown"]
    })
}
