//! `batch.tensorstack.dev/v1beta1` MPIJob, the T9k API.
//!
//! Field names follow the published T9k reference. Where the published
//! versions disagree (`cleanUpWorkers` as a bool or a string, `enable` or
//! `enabled`), both forms are accepted on input and one canonical form is
//! written out.
//!
//! Deserialisation is deliberately never stricter than the CRD schema: a
//! value the API server stores must always load, so that one bad job cannot
//! break the controller's watch of all the others. Values the schema cannot
//! express are carried through as-is and rejected by `validate`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_derive::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::contract;
use crate::schema;
pub use crate::template::PodTemplate;

/// The MPIJob spec: one worker template, the MPI settings and run policy.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "batch.tensorstack.dev",
    version = "v1beta1",
    kind = "MPIJob",
    plural = "mpijobs",
    singular = "mpijob",
    shortname = "mj",
    category = "all",
    namespaced,
    // kube-core, not the kube facade: this crate has no client.
    crates(kube_core = "::kube_core"),
    status = "MPIJobStatus",
    derive = "PartialEq",
    doc = "An MPI job: workers running sshd, and a launcher running mpirun across them.",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "The job's phase"}"#,
    printcolumn = r#"{"name": "Workers", "type": "integer", "jsonPath": ".spec.worker.replicas", "description": "Number of worker replicas"}"#,
    printcolumn = r#"{"name": "Running", "type": "integer", "jsonPath": ".status.aggregate.running", "description": "Pods running now", "priority": 1}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MPIJobSpec {
    /// The workers, and the command the launcher runs across them (the
    /// seed and pre-2023 schemas). The 2025 schema gives the same as
    /// `replicaSpecs` and `mpiConfig`; a job uses one or the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSpec>,

    /// The MPI settings in the 2025 schema: `home`, `mca`, `extraArgs` and
    /// `script` mean what `mpiHome`, `mca`, `worker.extraMPIArgs` and
    /// `worker.cmd` mean in the seed schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpi_config: Option<MpiConfig>,

    /// The replicas in the 2025 schema: one entry of type `worker` (its
    /// replicas and template) and, optionally, one of type `launcher`
    /// with the launcher's own template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_specs: Vec<ReplicaSpec>,

    /// Open MPI MCA parameters, passed to mpirun as `--mca KEY VALUE`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mca: BTreeMap<String, String>,

    /// Where the job's ssh keys are mounted, and which sshd to run.
    #[serde(default)]
    pub ssh: SshConfig,

    /// What happens to the workers when the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_policy: Option<RunPolicy>,

    /// The MPI installation: mpirun is `<mpiHome>/bin/mpirun`. Without it,
    /// mpirun is looked up on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpi_home: Option<String>,

    /// Scheduling through the T9k scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulePolicy>,

    /// Debug and pause modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_mode: Option<RunMode>,
}

/// `spec.worker.replicas` when absent.
pub fn default_replicas() -> i32 {
    1
}

/// The worker replicas and the MPI command.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Number of worker pods.
    #[serde(default = "default_replicas")]
    pub replicas: i32,

    /// Extra arguments for mpirun, placed after the MCA parameters and
    /// before `cmd`.
    #[serde(
        default,
        rename = "extraMPIArgs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extra_mpi_args: Vec<String>,

    /// The command mpirun starts on every slot, e.g. `[python, train.py]`.
    #[serde(default)]
    pub cmd: Vec<String>,

    /// The pod template for the workers and the launcher. The MPI container
    /// is the one named `mpi-worker`, or the first one.
    #[serde(default, skip_serializing_if = "PodTemplate::is_empty")]
    pub template: PodTemplate,

    /// Processes (ranks) on each worker, as the pre-2023 schema says it:
    /// each worker gets this many slots, and mpirun fills them. `-N` or
    /// `-np` in `extraMPIArgs` say the same; the larger count wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes_per_worker: Option<i32>,

    /// Open MPI's process recovery (pre-2023 schema): `enable` passes
    /// `--enable-recovery`, and `limit` `--max-restarts LIMIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_recovery: Option<ProcessRecovery>,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            replicas: default_replicas(),
            extra_mpi_args: Vec::new(),
            cmd: Vec::new(),
            template: PodTemplate::default(),
            processes_per_worker: None,
            process_recovery: None,
        }
    }
}

/// Open MPI's process recovery, in the pre-2023 schema.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRecovery {
    /// Restart a failed rank instead of ending the job (`--enable-recovery`).
    #[serde(default)]
    pub enable: bool,
    /// How many times a rank may be restarted (`--max-restarts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i32>,
}

/// The MPI settings, in the 2025 schema.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MpiConfig {
    /// The MPI installation: mpirun is `<home>/bin/mpirun` (seed schema:
    /// `mpiHome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Open MPI MCA parameters (seed schema: `mca`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mca: BTreeMap<String, String>,
    /// Extra arguments for mpirun (seed schema: `worker.extraMPIArgs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// The command mpirun starts on every slot (seed schema: `worker.cmd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub script: Vec<String>,
}

/// One replica type, in the 2025 schema.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// `worker`, or `launcher` (alias `master`).
    #[serde(rename = "type")]
    pub replica_type: ReplicaType,
    /// Pods of this type: the workers' count; 1 for the launcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The pod template. The launcher's may be empty (`{}`): it then uses
    /// the workers' template.
    #[serde(default, skip_serializing_if = "PodTemplate::is_empty")]
    pub template: PodTemplate,
}

/// The seed-schema worker every job has once normalised; the default
/// stands in before that (a spec that validation would reject).
static NO_WORKER: std::sync::LazyLock<WorkerSpec> = std::sync::LazyLock::new(WorkerSpec::default);

impl MPIJobSpec {
    /// The workers, in the seed schema's terms. After
    /// `defaults::normalize` every schema era has them here.
    pub fn worker(&self) -> &WorkerSpec {
        self.worker.as_ref().unwrap_or(&NO_WORKER)
    }

    /// [`MPIJobSpec::worker`], to change.
    pub fn worker_mut(&mut self) -> &mut WorkerSpec {
        self.worker.get_or_insert_with(WorkerSpec::default)
    }

    /// The launcher's pod template: its own (2025 schema), or the workers'.
    pub fn launcher_template(&self) -> &PodTemplate {
        self.replica_specs
            .iter()
            .find(|r| r.replica_type == ReplicaType::Launcher && !r.template.is_empty())
            .map_or(&self.worker().template, |r| &r.template)
    }

    /// Which schema era the spec is written in, for error messages.
    pub fn is_2025_schema(&self) -> bool {
        self.mpi_config.is_some() || !self.replica_specs.is_empty()
    }
}

/// ssh settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshConfig {
    /// Where the job Secret (the ssh key pair) is mounted, read-only.
    #[serde(default = "default_ssh_auth_mount_path")]
    pub ssh_auth_mount_path: String,

    /// The sshd binary the workers run.
    #[serde(default = "default_sshd_path")]
    pub sshd_path: String,
}

/// `spec.ssh.sshAuthMountPath` when absent.
pub fn default_ssh_auth_mount_path() -> String {
    contract::DEFAULT_SSH_AUTH_MOUNT_PATH.to_string()
}

/// `spec.ssh.sshdPath` when absent.
pub fn default_sshd_path() -> String {
    contract::DEFAULT_SSHD_PATH.to_string()
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            ssh_auth_mount_path: default_ssh_auth_mount_path(),
            sshd_path: default_sshd_path(),
        }
    }
}

/// Run policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Which workers to delete when the job ends. `all`, `unfinished` or
    /// `none`; the older boolean form is accepted, `true` meaning `all` and
    /// `false` meaning `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::clean_up_workers")]
    pub clean_up_workers: Option<CleanUpWorkers>,
}

/// Which workers are deleted when the job ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanUpWorkers {
    /// Delete every worker.
    All,
    /// Delete only the workers that have not finished.
    Unfinished,
    /// Keep every worker (their sshd is still told to finish).
    None,
    /// A value that is neither published form, kept so that validation can
    /// name it. Never produced by a valid spec.
    Invalid(String),
}

impl CleanUpWorkers {
    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        match self {
            CleanUpWorkers::All => "all",
            CleanUpWorkers::Unfinished => "unfinished",
            CleanUpWorkers::None => "none",
            CleanUpWorkers::Invalid(raw) => raw,
        }
    }

    fn from_json(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Bool(true) => CleanUpWorkers::All,
            serde_json::Value::Bool(false) => CleanUpWorkers::None,
            serde_json::Value::String(s) => match s.as_str() {
                "all" => CleanUpWorkers::All,
                "unfinished" => CleanUpWorkers::Unfinished,
                "none" => CleanUpWorkers::None,
                _ => CleanUpWorkers::Invalid(value.to_string()),
            },
            other => CleanUpWorkers::Invalid(other.to_string()),
        }
    }
}

impl Serialize for CleanUpWorkers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Written back as it was given (`"All"`, `3`), so that reading
            // it again names the same value, not a quoted copy of it.
            CleanUpWorkers::Invalid(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
                Ok(v) => v.serialize(s),
                Err(_) => s.serialize_str(raw),
            },
            other => s.serialize_str(other.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for CleanUpWorkers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(CleanUpWorkers::from_json(&value))
    }
}

/// Scheduler choice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulePolicy {
    /// Schedule the job's pods with the T9k scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t9k_scheduler: Option<T9kScheduler>,
}

/// T9k scheduler settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct T9kScheduler {
    /// The queue to submit to. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Priority within the queue, 0 to 100.
    #[serde(default)]
    pub priority: i32,
}

/// Debug and pause modes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunMode {
    /// Start the replicas with a debug command instead of the MPI roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debug: Option<DebugMode>,
    /// Pause the job: delete its pods, keep the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseMode>,
}

/// Debug mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebugMode {
    /// Turn debug mode on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Older spelling of `enable`; read, folded into `enable`, never written.
    #[serde(default, skip_serializing)]
    pub enabled: Option<bool>,
    /// Per replica type: the command to run instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_specs: Vec<ReplicaDebugSet>,
}

/// Debug settings of one replica type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaDebugSet {
    /// `launcher` (or its alias `master`) or `worker`.
    #[serde(rename = "type")]
    pub replica_type: ReplicaType,
    /// Do not add the agent's init container: the image has the agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_init_container: bool,
    /// The command to run instead, e.g. `[sleep, inf]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// Pause mode.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseMode {
    /// Pause the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Older spelling of `enable`; read, folded into `enable`, never written.
    #[serde(default, skip_serializing)]
    pub enabled: Option<bool>,
    /// Per replica type: how to start again when resumed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume_specs: Vec<ResumeSpec>,
}

/// How one replica type starts again after a pause.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResumeSpec {
    /// `launcher` (or its alias `master`) or `worker`.
    #[serde(rename = "type")]
    pub replica_type: ReplicaType,
    /// Do not add the agent's init container: the image has the agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_init_container: bool,
    /// The command to start with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// The two replica types. `master` is read as `launcher`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReplicaType {
    Launcher,
    Worker,
    /// A value that is neither, kept so that validation can name it.
    Invalid(String),
}

impl ReplicaType {
    pub fn as_str(&self) -> &str {
        match self {
            ReplicaType::Launcher => "launcher",
            ReplicaType::Worker => "worker",
            ReplicaType::Invalid(raw) => raw,
        }
    }
}

impl From<String> for ReplicaType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "launcher" | "master" => ReplicaType::Launcher,
            "worker" => ReplicaType::Worker,
            _ => ReplicaType::Invalid(s),
        }
    }
}

impl Serialize for ReplicaType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ReplicaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ReplicaType::from)
    }
}

impl JsonSchema for ReplicaType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReplicaType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": ["launcher", "master", "worker"],
            "description": "`launcher` (alias `master`) or `worker`."
        })
    }
}

/// The job's observed state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MPIJobStatus {
    /// Where the job is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::phase")]
    pub phase: Option<Phase>,
    /// The latest observations of the job's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pod counts per phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// One entry per replica type, with each replica's containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    /// When the controller first acted on the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The job's phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Running,
    Paused,
    Resuming,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    /// Succeeded and Failed are final.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// A condition, as in the Kubernetes API conventions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes, e.g. `Running`.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A stable, CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

/// The aspects of a job that conditions describe.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionType {
    /// Every child object exists (False: a name is taken by another owner).
    Created,
    Running,
    Succeeded,
    Failed,
    /// The spec was edited after the job's pods were created.
    SpecChangeIgnored,
    /// `runMode.pause`: True while the job is paused, False once resumed
    /// (or when pausing a finished job did nothing).
    Paused,
    /// `runMode.debug`: True while the pods run in debug mode.
    Debug,
    /// Gang scheduling (a PodGroup): True once the gang scheduler has
    /// placed every pod; False while they wait for it, naming it, or when
    /// its PodGroup CRD is not installed.
    Scheduled,
}

/// A condition's status.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

impl MPIJobStatus {
    /// Condition `type_`, if the status has it.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether condition `type_` is there and True.
    pub fn is_true(&self, type_: ConditionType) -> bool {
        self.condition(type_).is_some_and(Condition::is_true)
    }

    /// The task of one replica type.
    pub fn task(&self, replica_type: &ReplicaType) -> Option<&Task> {
        self.tasks.iter().find(|t| &t.replica_type == replica_type)
    }
}

/// Pod counts per phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    pub creating: i32,
    pub pending: i32,
    pub running: i32,
    pub succeeded: i32,
    pub failed: i32,
    pub unknown: i32,
    pub deleted: i32,
}

/// The replicas of one type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `launcher` or `worker`.
    pub replica_type: ReplicaType,
    /// Index of the replica type, kept for compatibility with T9k.
    #[serde(default)]
    pub replica_index: i32,
    /// The pods of this type. Above 1000 workers, a worker that runs with
    /// every container running, or succeeded with every container exited
    /// 0, is listed by name and phase only.
    #[serde(default)]
    pub replicas: Vec<ReplicaStatus>,
}

/// One pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub name: String,
    /// The pod's uid; absent while it is being created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The pod's phase, or `Creating` and `Deleted` for pods not there.
    pub phase: ReplicaPhase,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerStatus>,
}

/// A replica's phase: the pod's own, or `Creating` and `Deleted` for a pod
/// that is not there.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReplicaPhase {
    /// Not created yet, or not in the controller's cache yet.
    Creating,
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
    /// It existed once and is gone.
    Deleted,
}

impl ReplicaPhase {
    /// The phase of a pod whose `status.phase` is `phase`.
    pub fn of_pod(phase: Option<&str>) -> ReplicaPhase {
        match phase {
            Some("Pending") => ReplicaPhase::Pending,
            Some("Running") => ReplicaPhase::Running,
            Some("Succeeded") => ReplicaPhase::Succeeded,
            Some("Failed") => ReplicaPhase::Failed,
            // A pod the kubelet has not reported on is still pending.
            None => ReplicaPhase::Pending,
            Some(_) => ReplicaPhase::Unknown,
        }
    }
}

/// A container's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ContainerPhase {
    Waiting,
    Running,
    Terminated,
}

/// One container of a pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    /// `Waiting`, `Running` or `Terminated`.
    pub container_phase: ContainerPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec_from(yaml: &str) -> MPIJobSpec {
        crate::yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_fill_in_what_is_left_out() {
        let spec = spec_from("worker: {cmd: [hostname]}");
        assert_eq!(spec.worker().replicas, 1);
        assert_eq!(spec.ssh.ssh_auth_mount_path, "/root/.ssh");
        assert_eq!(spec.ssh.sshd_path, "/usr/sbin/sshd");
        assert_eq!(
            crate::t9k::defaults::clean_up_workers(&spec),
            CleanUpWorkers::None
        );
        let spec = spec_from("{worker: {cmd: [x]}, scheduler: {t9kScheduler: {queue: q}}}");
        assert_eq!(spec.scheduler.unwrap().t9k_scheduler.unwrap().priority, 0);
    }

    #[test]
    fn an_invalid_clean_up_policy_survives_a_round_trip_unchanged() {
        for given in [json!("All"), json!(3)] {
            let spec = spec_from(&format!(
                "{{worker: {{cmd: [x]}}, runPolicy: {{cleanUpWorkers: {given}}}}}"
            ));
            let again: MPIJobSpec =
                serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
            let policy = again.run_policy.unwrap().clean_up_workers.unwrap();
            assert_eq!(policy, CleanUpWorkers::Invalid(given.to_string()));
        }
    }

    #[test]
    fn clean_up_workers_accepts_both_forms_and_writes_strings() {
        for (input, want) in [
            ("true", CleanUpWorkers::All),
            ("false", CleanUpWorkers::None),
            ("all", CleanUpWorkers::All),
            ("unfinished", CleanUpWorkers::Unfinished),
            ("none", CleanUpWorkers::None),
        ] {
            let spec = spec_from(&format!(
                "{{worker: {{cmd: [x]}}, runPolicy: {{cleanUpWorkers: {input}}}}}"
            ));
            let got = spec.run_policy.as_ref().unwrap().clean_up_workers.clone();
            assert_eq!(got, Some(want.clone()), "{input}");
            let out = serde_json::to_value(&spec).unwrap();
            assert_eq!(out["runPolicy"]["cleanUpWorkers"], want.as_str(), "{input}");
        }
    }

    #[test]
    fn master_is_read_as_launcher_and_written_as_launcher() {
        let spec = spec_from(
            "{worker: {cmd: [x]}, runMode: {debug: {enabled: true, replicaSpecs: [{type: master, command: [sleep, inf]}]}}}",
        );
        let debug = spec.run_mode.as_ref().unwrap().debug.as_ref().unwrap();
        assert_eq!(debug.replica_specs[0].replica_type, ReplicaType::Launcher);
        assert!(crate::t9k::defaults::debug_enabled(&spec));
        let mut spec = spec;
        crate::t9k::defaults::normalize(&mut spec);
        let out = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            out["runMode"]["debug"]["replicaSpecs"][0]["type"],
            "launcher"
        );
        assert_eq!(out["runMode"]["debug"]["enable"], true);
        assert!(out["runMode"]["debug"].get("enabled").is_none());
    }

    #[test]
    fn unknown_fields_are_ignored_like_the_api_server_prunes_them() {
        // The pre-2023 schema's fields must not stop a job from loading.
        let spec = spec_from("{worker: {cmd: [x], processesPerWorker: 9}}");
        assert_eq!(spec.worker().cmd, vec!["x"]);
    }
}
