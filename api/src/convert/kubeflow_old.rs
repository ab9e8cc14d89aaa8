//! Kubeflow's older MPIJob versions, `v1alpha1` and `v1alpha2` (and `v1`,
//! which kept v1alpha2's shape), to `v2beta1`. The mapping is mpi-operator's
//! (`../shared/ref/kubeflow-v2beta1.md`, section 6):
//!
//! | older | v2beta1 |
//! |---|---|
//! | `spec.backoffLimit`, `spec.activeDeadlineSeconds`, `spec.cleanPodPolicy` | `spec.runPolicy.*`; a value in `runPolicy` wins |
//! | `spec.mainContainer` | dropped; that container moves first, which v2beta1 runs |
//! | `mpiDistribution` `open_mpi`/`OpenMPI`, `intel_mpi`/`IntelMPI`, `mpich`/`MPICH` | `mpiImplementation` `OpenMPI`, `Intel`, `MPICH` |
//! | `restartPolicy` `Always`, `ExitCode` | `OnFailure` |
//! | v1alpha1 `replicas`, or `gpus`/`processingUnits` over `gpusPerNode`/`processingUnitsPerNode` | `Worker.replicas` = units / per node (1 if fewer units); `slotsPerWorker` = units per worker |
//! | v1alpha1 `template` | the Launcher's template; the Worker's without its command |
//!
//! v1alpha1 and v1alpha2 kept workers alive without sshd and ran ranks
//! through `kubectl exec`; v2beta1 workers run the image's own sshd, which
//! every conversion says.

use serde_json::{json, Map, Value};

use super::Note;
use crate::{FieldError, FieldErrors};

/// The versions read here.
pub const VERSIONS: [&str; 3] = [
    "kubeflow.org/v1alpha1",
    "kubeflow.org/v1alpha2",
    "kubeflow.org/v1",
];

fn error(path: &str, message: impl Into<String>) -> FieldErrors {
    FieldErrors(vec![FieldError::new(path, message)])
}

/// Convert an older Kubeflow MPIJob to `v2beta1` JSON.
pub fn to_v2beta1(job: &Value, notes: &mut Vec<Note>) -> Result<Value, FieldErrors> {
    let version = job["apiVersion"].as_str().unwrap_or_default();
    if job["kind"] != "MPIJob" {
        return Err(error(
            "kind",
            format!("must be MPIJob, got {}", job["kind"]),
        ));
    }
    let spec = job["spec"].as_object().cloned().unwrap_or_default();
    let mut out = match version {
        "kubeflow.org/v1alpha1" => v1alpha1(&spec, notes)?,
        "kubeflow.org/v1alpha2" | "kubeflow.org/v1" => v1alpha2(&spec, notes)?,
        _ => {
            return Err(error(
                "apiVersion",
                format!(
                    "must be {}, {} or one of {}, got {version:?}",
                    crate::manifest::API_VERSION,
                    crate::kubeflow::API_VERSION,
                    VERSIONS.join(", ")
                ),
            ))
        }
    };
    let worker = out.pointer("/mpiReplicaSpecs/Worker/template/spec/containers/0/command");
    notes.push(Note::new(
        "spec.mpiReplicaSpecs.Worker",
        if worker.is_some() {
            "v2beta1 workers run their container's command, which must start sshd: the older versions kept workers alive and ran ranks through kubectl exec".to_string()
        } else {
            "v2beta1 workers run the image's entrypoint, which must start sshd (e.g. command [/usr/sbin/sshd, -De]): the older versions kept workers alive and ran ranks through kubectl exec".to_string()
        },
    ));
    let mut metadata = Map::new();
    for key in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = job["metadata"].get(key) {
            metadata.insert(key.to_string(), v.clone());
        }
    }
    if let Some(o) = out.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    Ok(json!({
        "apiVersion": crate::kubeflow::API_VERSION,
        "kind": "MPIJob",
        "metadata": metadata,
        "spec": out,
    }))
}

/// `spec.runPolicy` from the run fields at `spec` level and the older
/// optional `runPolicy`, which wins.
fn run_policy(spec: &Map<String, Value>, notes: &mut Vec<Note>) -> Value {
    let mut policy = spec
        .get("runPolicy")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for key in ["backoffLimit", "activeDeadlineSeconds", "cleanPodPolicy"] {
        let Some(v) = spec.get(key) else {
            continue;
        };
        match policy.get(key) {
            Some(kept) if kept != v => notes.push(Note::new(
                format!("spec.{key}"),
                format!("dropped: spec.runPolicy.{key} ({kept}) wins, as it did in this version"),
            )),
            Some(_) => {}
            None => {
                policy.insert(key.to_string(), v.clone());
            }
        }
    }
    Value::Object(policy)
}

fn v1alpha2(spec: &Map<String, Value>, notes: &mut Vec<Note>) -> Result<Value, FieldErrors> {
    let mut out = json!({
        "slotsPerWorker": spec.get("slotsPerWorker").cloned().unwrap_or(json!(1)),
        "runPolicy": run_policy(spec, notes),
    });
    if let Some(d) = spec.get("mpiDistribution") {
        let implementation = match d.as_str().unwrap_or_default() {
            "open_mpi" | "OpenMPI" => "OpenMPI",
            "intel_mpi" | "IntelMPI" => "Intel",
            "mpich" | "MPICH" => "MPICH",
            other => {
                return Err(error(
                    "spec.mpiDistribution",
                    format!("must be open_mpi, intel_mpi or mpich (or OpenMPI, IntelMPI, MPICH), got {other:?}"),
                ))
            }
        };
        out["mpiImplementation"] = json!(implementation);
    }
    let Some(replicas) = spec.get("mpiReplicaSpecs").and_then(Value::as_object) else {
        return Err(error(
            "spec.mpiReplicaSpecs",
            "is required: give the Launcher and the Worker",
        ));
    };
    let main = spec.get("mainContainer").and_then(Value::as_str);
    let mut converted = Map::new();
    for (kind, r) in replicas {
        let mut r = r.clone();
        let at = format!("spec.mpiReplicaSpecs.{kind}");
        if let Some(policy) = r.get("restartPolicy").and_then(Value::as_str) {
            if matches!(policy, "Always" | "ExitCode") {
                notes.push(Note::new(
                    format!("{at}.restartPolicy"),
                    format!("{policy} became OnFailure: v2beta1 allows only Never and OnFailure"),
                ));
                r["restartPolicy"] = json!("OnFailure");
            }
        }
        if let Some(name) = main {
            if let Some(cs) = r
                .pointer_mut("/template/spec/containers")
                .and_then(Value::as_array_mut)
            {
                if let Some(i) = cs.iter().position(|c| c["name"] == name).filter(|i| *i > 0) {
                    let c = cs.remove(i);
                    cs.insert(0, c);
                    notes.push(Note::new(
                        format!("{at}.template.spec.containers[{i}]"),
                        format!("moved first: it is the mainContainer ({name}), and v2beta1 runs MPI in the first container"),
                    ));
                }
            }
        }
        converted.insert(kind.clone(), r);
    }
    out["mpiReplicaSpecs"] = Value::Object(converted);
    if let Some(name) = main {
        notes.push(Note::new(
            "spec.mainContainer",
            format!("dropped: v2beta1 runs MPI in the first container, where {name} now is"),
        ));
    }
    for key in spec.keys() {
        let known = [
            "slotsPerWorker",
            "backoffLimit",
            "activeDeadlineSeconds",
            "cleanPodPolicy",
            "mpiReplicaSpecs",
            "mainContainer",
            "runPolicy",
            "mpiDistribution",
        ];
        if !known.contains(&key.as_str()) {
            notes.push(Note::new(
                format!("spec.{key}"),
                "dropped: not a field of this version",
            ));
        }
    }
    Ok(out)
}

fn v1alpha1(spec: &Map<String, Value>, notes: &mut Vec<Note>) -> Result<Value, FieldErrors> {
    let int = |key: &str| -> Result<Option<i64>, FieldErrors> {
        match spec.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
                error(
                    &format!("spec.{key}"),
                    format!("must be a whole number, got {v}"),
                )
            }),
        }
    };
    let (units_key, units) = match (int("gpus")?, int("processingUnits")?) {
        (Some(g), _) => ("gpus", Some(g)),
        (None, p) => ("processingUnits", p),
    };
    let per_node_key = if units_key == "gpus" {
        "gpusPerNode"
    } else {
        "processingUnitsPerNode"
    };
    let (workers, slots) = match (int("replicas")?, units) {
        (Some(n), _) => (n, int("slotsPerWorker")?.unwrap_or(1)),
        (None, Some(units)) if units > 0 => {
            let per_node = match int(per_node_key)? {
                Some(n) if n > 0 => n,
                _ => {
                    notes.push(Note::new(
                        format!("spec.{per_node_key}"),
                        "taken as 1: the per-node count came from mpi-operator's flags, which the manifest does not show",
                    ));
                    1
                }
            };
            let workers = if units < per_node { 1 } else { units / per_node };
            if units % workers != 0 {
                notes.push(Note::new(
                    format!("spec.{units_key}"),
                    format!("{units} does not divide over {workers} workers: each gets {}", units / workers),
                ));
            }
            (workers, int("slotsPerWorker")?.unwrap_or(units / workers))
        }
        _ => {
            return Err(error(
                "spec",
                "needs replicas, gpus or processingUnits: the number of workers or of units to spread over them",
            ))
        }
    };
    let Some(template) = spec.get("template").filter(|t| t.is_object()) else {
        return Err(error("spec.template", "is required: the pod template"));
    };
    let mut worker = template.clone();
    if let Some(c) = worker
        .pointer_mut("/spec/containers/0")
        .and_then(Value::as_object_mut)
    {
        c.remove("command");
        c.remove("args");
    }
    for key in ["launcherOnMaster", "processingResourceType"] {
        if spec.contains_key(key) {
            notes.push(Note::new(
                format!("spec.{key}"),
                "dropped: v2beta1 places the launcher and sizes the workers through their templates",
            ));
        }
    }
    Ok(json!({
        "slotsPerWorker": slots,
        "runPolicy": run_policy(spec, notes),
        "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "template": template},
            "Worker": {"replicas": workers, "template": worker},
        },
    }))
}
