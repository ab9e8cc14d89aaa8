//! `kubeflow.org/v2beta1` MPIJob, Kubeflow mpi-operator's API.
//!
//! Field names, JSON shapes and status types are Kubeflow's (mpi-operator
//! v0.8.2), so that manifests, dashboards and tools written for it work
//! unchanged. Deserialisation is never stricter than the CRD schema: enum
//! fields are plain strings here, checked by [`super::resolve`], because a
//! cluster may run Kubeflow's own CRD, which does not constrain all of them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;
use crate::template::PodTemplate;

/// The MPIJob spec: a launcher and workers, and how to run them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubeflow.org",
    version = "v2beta1",
    kind = "MPIJob",
    plural = "mpijobs",
    singular = "mpijob",
    namespaced,
    crates(kube_core = "::kube_core"),
    status = "JobStatus",
    derive = "PartialEq",
    doc = "A Kubeflow MPI job: workers running the image's sshd, and a launcher Job running mpirun across them.",
    printcolumn = r#"{"name": "State", "type": "string", "jsonPath": ".status.conditions[-1:].type", "description": "The latest condition"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MPIJobSpec {
    /// The number of slots (MPI processes) per worker in the hostfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 1, "minimum" = 0))]
    pub slots_per_worker: Option<i32>,

    /// Run ranks on the launcher too: it is listed first in the hostfile,
    /// with the same slots as a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub run_launcher_as_worker: Option<bool>,

    /// Clean-up, time limits, retries, scheduling, suspension and
    /// management of the job.
    #[serde(default)]
    pub run_policy: RunPolicy,

    /// The replicas by type: `Launcher` (required, exactly 1) and `Worker`.
    #[serde(rename = "mpiReplicaSpecs")]
    pub mpi_replica_specs: BTreeMap<String, ReplicaSpec>,

    /// Where the job's ssh Secret is mounted in the first container of
    /// every pod: the home directory's `.ssh` of the user MPI runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "/root/.ssh"))]
    pub ssh_auth_mount_path: Option<String>,

    /// When the launcher Job is created: `AtStartup` (with the workers; it
    /// waits for them in an init container) or `WaitForWorkersReady` (once
    /// every worker is Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "AtStartup", "enum" = ["AtStartup", "WaitForWorkersReady"]))]
    pub launcher_creation_policy: Option<String>,

    /// The MPI implementation the images use: `OpenMPI`, `Intel` or `MPICH`.
    /// It decides the hostfile format and the launcher's environment.
    #[serde(
        default,
        rename = "mpiImplementation",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = "OpenMPI", "enum" = ["OpenMPI", "Intel", "MPICH"]))]
    pub mpi_implementation: Option<String>,
}

/// Kubeflow's common run policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Which worker pods to delete when the job ends: `None` (default),
    /// `Running` (those still running) or `All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["None", "Running", "All"]))]
    pub clean_pod_policy: Option<String>,

    /// Seconds after the launcher Job finishes before it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub ttl_seconds_after_finished: Option<i32>,

    /// The launcher Job's time limit in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub active_deadline_seconds: Option<i64>,

    /// How many times the launcher pod is retried before the job fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0))]
    pub backoff_limit: Option<i32>,

    /// Gang scheduling: the PodGroup's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling_policy: Option<SchedulingPolicy>,

    /// Suspend the job: its workers are deleted and the launcher Job is
    /// suspended; set false to resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub suspend: Option<bool>,

    /// The controller that manages this job. Only `kubeflow.org/mpi-operator`
    /// (or unset) is handled here; any other value, e.g.
    /// `kueue.x-k8s.io/multikueue`, leaves the job to that controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// Gang scheduling settings, for the PodGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingPolicy {
    /// Pods that must be schedulable together [default: workers + 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<i32>,
    /// The scheduler's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Resources that must be free together [default: computed from the
    /// pods' requests].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_resources: Option<BTreeMap<String, Quantity>>,
    /// The PodGroup's priority class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// How long the scheduler waits for the whole gang.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_timeout_seconds: Option<i32>,
}

/// One replica type's count, restart policy and pod template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// The number of pods: 1 for the launcher, at least 1 for the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pod template.
    #[serde(default, skip_serializing_if = "PodTemplate::is_empty")]
    #[schemars(schema_with = "schema::kubeflow_pod_template")]
    pub template: PodTemplate,
    /// `Never` or `OnFailure` [default: OnFailure for the launcher, Never
    /// for the workers]. `ExitCode` is taken as `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
}

/// The replica types, as the keys of `mpiReplicaSpecs` and of
/// `status.replicaStatuses`.
pub mod replica_type {
    pub const LAUNCHER: &str = "Launcher";
    pub const WORKER: &str = "Worker";
}

/// The job's status, exactly as Kubeflow's CRD defines it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The job's conditions, one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<JobCondition>,
    /// Pod counts by replica type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica_statuses: BTreeMap<String, ReplicaStatus>,
    /// When the job started (again, after a resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Kept for compatibility; never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_time: Option<Time>,
}

/// Pod counts of one replica type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Pods running.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub active: i32,
    /// Pods that succeeded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub succeeded: i32,
    /// Pods that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i32,
    /// Kept for compatibility; never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Kept for compatibility; never set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A condition, as Kubeflow writes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    /// Created, Running, Restarting, Succeeded, Suspended or Failed.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason, e.g. `MPIJobSucceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the condition was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// Condition types.
pub mod condition {
    pub const CREATED: &str = "Created";
    pub const RUNNING: &str = "Running";
    pub const RESTARTING: &str = "Restarting";
    pub const SUCCEEDED: &str = "Succeeded";
    /// Not mpi-operator's: gang scheduling's state (True once every pod is
    /// placed). It is kept first in the list, so that the `State` column
    /// (the last condition) still shows the job's lifecycle.
    pub const SCHEDULED: &str = "Scheduled";
    pub const SUSPENDED: &str = "Suspended";
    pub const FAILED: &str = "Failed";
}

impl JobStatus {
    /// Condition `type_`, if the status has it.
    pub fn condition(&self, type_: &str) -> Option<&JobCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether condition `type_` is True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// Succeeded or Failed is True.
    pub fn is_finished(&self) -> bool {
        self.is_true(condition::SUCCEEDED) || self.is_true(condition::FAILED)
    }
}
