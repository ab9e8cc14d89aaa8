//! Defaults and validation of a Kubeflow MPIJob, in one step: a valid spec
//! becomes a [`Resolved`] job with every default applied and every enum
//! typed; an invalid one gives every problem found, each naming the field,
//! the value and the fix.
//!
//! The defaults are mpi-operator's Go defaults, applied in memory and never
//! written back. The checks are mpi-operator's, plus a few it lacks (enums
//! its CRD does not constrain, unknown replica types, a malformed
//! `managedBy`), so that a typo is an error instead of a silent surprise.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::v2beta1::{replica_type, MPIJob, MPIJobSpec, SchedulingPolicy};
use crate::contract::{MpiImplementation, DEFAULT_SLOTS, DEFAULT_SSH_AUTH_MOUNT_PATH};
use crate::validate::{job_name, MAX_REPLICAS};
use crate::FieldError;

/// `runPolicy.managedBy` of jobs this controller runs (or unset).
pub const MANAGED_BY_US: &str = "kubeflow.org/mpi-operator";
/// `runPolicy.managedBy` of jobs that Kueue's MultiKueue dispatches.
pub const MANAGED_BY_MULTIKUEUE: &str = "kueue.x-k8s.io/multikueue";

/// Who runs the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manager {
    /// This controller (`managedBy` unset or [`MANAGED_BY_US`]).
    Us,
    /// Another controller, named by `managedBy`: the job is left alone.
    Other(String),
}

/// `runPolicy.cleanPodPolicy`: which workers go when the job ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanPodPolicy {
    /// Keep every worker (the default).
    None,
    /// Delete the workers still running.
    Running,
    /// Delete every worker.
    All,
}

/// `launcherCreationPolicy`: when the launcher Job is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LauncherCreationPolicy {
    /// With the workers; its init container waits for them.
    AtStartup,
    /// Once every worker pod is Ready.
    WaitForWorkersReady,
}

/// `restartPolicy` of a replica type, as its pods get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Never,
    OnFailure,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "Never",
            RestartPolicy::OnFailure => "OnFailure",
        }
    }
}

/// One replica type, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Replica {
    pub replicas: u32,
    pub restart_policy: RestartPolicy,
    /// The template, with at least one container.
    pub template: PodTemplateSpec,
}

impl Replica {
    /// The template sets its own `restartPolicy`, which the replica's
    /// overrides (mpi-operator warns with `SetPodTemplateRestartPolicy`).
    pub fn template_restart_policy(&self) -> Option<&str> {
        self.template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
    }
}

/// A valid job's spec with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub slots_per_worker: u32,
    pub run_launcher_as_worker: bool,
    pub ssh_auth_mount_path: String,
    pub launcher_creation_policy: LauncherCreationPolicy,
    pub mpi_implementation: MpiImplementation,
    pub clean_pod_policy: CleanPodPolicy,
    pub ttl_seconds_after_finished: Option<i32>,
    pub active_deadline_seconds: Option<i64>,
    pub backoff_limit: Option<i32>,
    pub scheduling_policy: Option<SchedulingPolicy>,
    pub suspend: bool,
    /// The image holds the agent ([`crate::contract::AGENT_IN_IMAGE_ANNOTATION`]):
    /// the workers get no agent init container.
    pub agent_in_image: bool,
    pub launcher: Replica,
    /// `None` for a launcher-only job.
    pub worker: Option<Replica>,
}

impl Resolved {
    /// The number of worker pods.
    pub fn workers(&self) -> u32 {
        self.worker.as_ref().map_or(0, |w| w.replicas)
    }
}

/// The values `mpiImplementation` takes, and what they mean.
const IMPLEMENTATIONS: [(&str, MpiImplementation); 3] = [
    ("OpenMPI", MpiImplementation::OpenMpi),
    ("Intel", MpiImplementation::Intel),
    ("MPICH", MpiImplementation::Mpich),
];

/// The `mpiImplementation` value for an implementation.
pub fn implementation_name(i: MpiImplementation) -> &'static str {
    IMPLEMENTATIONS
        .iter()
        .find(|(_, v)| *v == i)
        .map(|(k, _)| *k)
        .expect("every implementation has a name")
}

/// Who runs the job. A malformed `managedBy` is an error: it cannot name a
/// controller, so leaving the job to it would leave the job to no one.
pub fn manager(spec: &MPIJobSpec) -> Result<Manager, FieldError> {
    match spec.run_policy.managed_by.as_deref() {
        None | Some(MANAGED_BY_US) => Ok(Manager::Us),
        Some(other) if is_domain_prefixed_path(other) && other.len() <= 63 => {
            Ok(Manager::Other(other.to_string()))
        }
        Some(other) => Err(FieldError::new(
            "spec.runPolicy.managedBy",
            format!("{other:?} is not a controller name: use a domain-prefixed path of at most 63 characters, e.g. {MANAGED_BY_US} (this controller) or {MANAGED_BY_MULTIKUEUE}, or leave it unset"),
        )),
    }
}

/// `example.com/path`: a DNS subdomain, a slash, and a non-empty path.
fn is_domain_prefixed_path(s: &str) -> bool {
    let Some((domain, path)) = s.split_once('/') else {
        return false;
    };
    !path.is_empty()
        && !path.chars().any(char::is_whitespace)
        && domain.len() <= 253
        && domain.split('.').all(crate::validate::is_dns_1123_label)
}

/// Check the job and apply the defaults. Returns every problem found, in
/// field order.
pub fn resolve(job: &MPIJob) -> Result<Resolved, Vec<FieldError>> {
    let spec = &job.spec;
    let mut e = Vec::new();

    let worker_replicas = spec
        .mpi_replica_specs
        .get(replica_type::WORKER)
        .map(|w| w.replicas.unwrap_or(0));
    match job.metadata.name.as_deref() {
        None | Some("") => e.push(FieldError::new(
            "metadata.name",
            "is required: name the job, e.g. pi",
        )),
        Some(name) => {
            if let Err(err) = job_name(name, worker_replicas.unwrap_or(0).clamp(1, MAX_REPLICAS)) {
                e.push(err);
            }
        }
    }

    let agent_in_image = crate::validate::agent_in_image(job.metadata.annotations.as_ref())
        .unwrap_or_else(|err| {
            e.push(err);
            false
        });

    let slots_per_worker = match spec.slots_per_worker {
        None => DEFAULT_SLOTS,
        Some(n) if n < 0 => {
            e.push(FieldError::new(
                "spec.slotsPerWorker",
                format!("must be 0 or more, got {n}: give the MPI processes per worker, e.g. 1"),
            ));
            DEFAULT_SLOTS
        }
        Some(n) => n as u32,
    };

    let ssh_auth_mount_path = match spec.ssh_auth_mount_path.as_deref() {
        None => DEFAULT_SSH_AUTH_MOUNT_PATH.to_string(),
        Some("") => {
            e.push(FieldError::new(
                "spec.sshAuthMountPath",
                "must not be empty: give the .ssh directory of the user MPI runs as, e.g. /root/.ssh or /home/mpiuser/.ssh",
            ));
            String::new()
        }
        Some(p) if !p.starts_with('/') => {
            e.push(FieldError::new(
                "spec.sshAuthMountPath",
                format!("{p:?} is not an absolute path: give the .ssh directory of the user MPI runs as, e.g. /home/mpiuser/.ssh"),
            ));
            String::new()
        }
        Some(p) => p.to_string(),
    };

    let launcher_creation_policy = match spec.launcher_creation_policy.as_deref() {
        None | Some("AtStartup") => LauncherCreationPolicy::AtStartup,
        Some("WaitForWorkersReady") => LauncherCreationPolicy::WaitForWorkersReady,
        Some(other) => {
            e.push(FieldError::new(
                "spec.launcherCreationPolicy",
                format!("unknown policy {other:?}: use AtStartup or WaitForWorkersReady"),
            ));
            LauncherCreationPolicy::AtStartup
        }
    };

    let mpi_implementation = match spec.mpi_implementation.as_deref() {
        None => MpiImplementation::OpenMpi,
        Some(v) => match IMPLEMENTATIONS.iter().find(|(k, _)| *k == v) {
            Some((_, i)) => *i,
            None => {
                e.push(FieldError::new(
                    "spec.mpiImplementation",
                    format!("unknown MPI implementation {v:?}: use OpenMPI, Intel or MPICH (the names are case-sensitive)"),
                ));
                MpiImplementation::OpenMpi
            }
        },
    };

    let rp = &spec.run_policy;
    let clean_pod_policy = match rp.clean_pod_policy.as_deref() {
        None | Some("None") => CleanPodPolicy::None,
        Some("Running") => CleanPodPolicy::Running,
        Some("All") => CleanPodPolicy::All,
        Some(other) => {
            e.push(FieldError::new(
                "spec.runPolicy.cleanPodPolicy",
                format!("unknown policy {other:?}: use None, Running or All"),
            ));
            CleanPodPolicy::None
        }
    };
    non_negative(
        "spec.runPolicy.ttlSecondsAfterFinished",
        rp.ttl_seconds_after_finished.map(i64::from),
        "seconds to keep the finished launcher Job, e.g. 60",
        &mut e,
    );
    non_negative(
        "spec.runPolicy.activeDeadlineSeconds",
        rp.active_deadline_seconds,
        "the launcher's time limit in seconds, e.g. 3600",
        &mut e,
    );
    non_negative(
        "spec.runPolicy.backoffLimit",
        rp.backoff_limit.map(i64::from),
        "how often to retry the launcher, e.g. 3",
        &mut e,
    );
    if let Some(sp) = &rp.scheduling_policy {
        scheduling_policy(
            sp,
            worker_replicas.unwrap_or(0),
            launcher_creation_policy,
            &mut e,
        );
    }
    if let Err(err) = manager(spec) {
        e.push(err);
    }

    for key in spec.mpi_replica_specs.keys() {
        if key != replica_type::LAUNCHER && key != replica_type::WORKER {
            e.push(FieldError::new(
                format!("spec.mpiReplicaSpecs.{key}"),
                format!("unknown replica type {key:?}: use Launcher or Worker (the names are case-sensitive)"),
            ));
        }
    }
    let launcher = match spec.mpi_replica_specs.get(replica_type::LAUNCHER) {
        None => {
            e.push(FieldError::new(
                "spec.mpiReplicaSpecs.Launcher",
                "is required: add a Launcher with replicas: 1 and a template whose first container runs mpirun",
            ));
            None
        }
        Some(l) => {
            let replicas = l.replicas.unwrap_or(1);
            if replicas != 1 {
                e.push(FieldError::new(
                    "spec.mpiReplicaSpecs.Launcher.replicas",
                    format!("must be 1, got {replicas}: a job has one launcher"),
                ));
            }
            replica(
                replica_type::LAUNCHER,
                1,
                l,
                RestartPolicy::OnFailure,
                &mut e,
            )
        }
    };
    let worker = match spec.mpi_replica_specs.get(replica_type::WORKER) {
        None => None,
        Some(w) => {
            let replicas = w.replicas.unwrap_or(0);
            if replicas < 1 {
                let given = if w.replicas.is_none() {
                    "unset".to_string()
                } else {
                    replicas.to_string()
                };
                e.push(FieldError::new(
                    "spec.mpiReplicaSpecs.Worker.replicas",
                    format!("must be at least 1, got {given}: set the number of workers, or remove the Worker entry for a launcher-only job"),
                ));
            } else if replicas > MAX_REPLICAS {
                e.push(FieldError::new(
                    "spec.mpiReplicaSpecs.Worker.replicas",
                    format!("must be at most {MAX_REPLICAS}, got {replicas}"),
                ));
            }
            replica(
                replica_type::WORKER,
                replicas.max(0) as u32,
                w,
                RestartPolicy::Never,
                &mut e,
            )
        }
    };

    match (launcher, e.is_empty()) {
        (Some(launcher), true) => Ok(Resolved {
            slots_per_worker,
            run_launcher_as_worker: spec.run_launcher_as_worker.unwrap_or(false),
            ssh_auth_mount_path,
            launcher_creation_policy,
            mpi_implementation,
            clean_pod_policy,
            ttl_seconds_after_finished: rp.ttl_seconds_after_finished,
            active_deadline_seconds: rp.active_deadline_seconds,
            backoff_limit: rp.backoff_limit,
            scheduling_policy: rp.scheduling_policy.clone(),
            suspend: rp.suspend.unwrap_or(false),
            agent_in_image,
            launcher,
            worker,
        }),
        _ => Err(e),
    }
}

fn non_negative(path: &str, value: Option<i64>, what: &str, e: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| *v < 0) {
        e.push(FieldError::new(
            path,
            format!("must be 0 or more, got {v}: give {what}, or leave it unset"),
        ));
    }
}

fn scheduling_policy(
    sp: &SchedulingPolicy,
    workers: i32,
    launcher: LauncherCreationPolicy,
    e: &mut Vec<FieldError>,
) {
    let path = "spec.runPolicy.schedulingPolicy";
    if let Some(n) = sp.min_available {
        let workers = workers.max(0);
        let pods = workers + 1;
        if n < 1 || n > pods {
            e.push(FieldError::new(
                format!("{path}.minAvailable"),
                format!("must be between 1 and {pods} (the workers and the launcher), got {n}: or leave it unset for {pods}"),
            ));
        } else if n == pods
            && workers > 0
            && launcher == LauncherCreationPolicy::WaitForWorkersReady
        {
            // The gang would wait for the launcher, and the launcher for
            // the gang: neither would ever start.
            e.push(FieldError::new(
                format!("{path}.minAvailable"),
                format!("{n} counts the launcher, but spec.launcherCreationPolicy WaitForWorkersReady creates the launcher only once the {workers} worker(s) run, and a gang scheduler runs none of them until {n} pods exist: set it to {workers} or less, leave it unset, or use launcherCreationPolicy AtStartup"),
            ));
        }
    }
    non_negative(
        &format!("{path}.scheduleTimeoutSeconds"),
        sp.schedule_timeout_seconds.map(i64::from),
        "how long the scheduler waits for the whole gang, e.g. 300",
        e,
    );
}

/// Check one replica's restart policy and template.
fn replica(
    key: &str,
    replicas: u32,
    spec: &super::v2beta1::ReplicaSpec,
    default_restart: RestartPolicy,
    e: &mut Vec<FieldError>,
) -> Option<Replica> {
    let path = format!("spec.mpiReplicaSpecs.{key}");
    let restart_policy = match spec.restart_policy.as_deref() {
        None => default_restart,
        Some("Never") | Some("ExitCode") => RestartPolicy::Never,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some(other) => {
            e.push(FieldError::new(
                format!("{path}.restartPolicy"),
                format!("{other:?} is not allowed: use Never or OnFailure"),
            ));
            default_restart
        }
    };
    let template = match spec.template.parse_at(&format!("{path}.template")) {
        Ok(t) => t,
        Err(err) => {
            e.push(err);
            return None;
        }
    };
    if template
        .spec
        .as_ref()
        .is_none_or(|s| s.containers.is_empty())
    {
        e.push(FieldError::new(
            format!("{path}.template.spec.containers"),
            format!(
                "must have at least one container: the first one runs {}",
                if key == replica_type::LAUNCHER {
                    "mpirun"
                } else {
                    "sshd"
                }
            ),
        ));
        return None;
    }
    Some(Replica {
        replicas,
        restart_policy,
        template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml: &str) -> MPIJob {
        crate::yaml::from_str(yaml).unwrap()
    }

    /// A valid job; each bad case replaces one line of it.
    const GOOD: &str = "apiVersion: kubeflow.org/v2beta1
kind: MPIJob
metadata: {name: pi}
spec:
  slotsPerWorker: 1
  runPolicy: {cleanPodPolicy: Running}
  mpiReplicaSpecs:
    Launcher:
      replicas: 1
      template: {spec: {containers: [{name: launcher, image: mpi, command: [mpirun, -n, '2', /pi]}]}}
    Worker:
      replicas: 2
      template: {spec: {containers: [{name: worker, image: mpi}]}}
";

    #[test]
    fn a_valid_job_gets_the_defaults() {
        let r = resolve(&job(GOOD)).unwrap();
        assert_eq!(r.slots_per_worker, 1);
        assert_eq!(r.ssh_auth_mount_path, "/root/.ssh");
        assert_eq!(r.mpi_implementation, MpiImplementation::OpenMpi);
        assert_eq!(
            r.launcher_creation_policy,
            LauncherCreationPolicy::AtStartup
        );
        assert_eq!(r.clean_pod_policy, CleanPodPolicy::Running);
        assert!(!r.run_launcher_as_worker && !r.suspend);
        assert_eq!(r.launcher.restart_policy, RestartPolicy::OnFailure);
        let w = r.worker.as_ref().unwrap();
        assert_eq!((w.replicas, w.restart_policy), (2, RestartPolicy::Never));
        assert_eq!(r.workers(), 2);
        assert_eq!(manager(&job(GOOD).spec), Ok(Manager::Us));
    }

    #[test]
    fn a_launcher_only_job_is_valid() {
        let text = GOOD.split("    Worker:").next().unwrap();
        let r = resolve(&job(text)).unwrap();
        assert_eq!(r.worker, None);
        assert_eq!(r.workers(), 0);
    }

    #[test]
    fn exit_code_restart_policy_means_never() {
        let text = GOOD.replace(
            "      replicas: 2\n",
            "      replicas: 2\n      restartPolicy: ExitCode\n",
        );
        let r = resolve(&job(&text)).unwrap();
        assert_eq!(r.worker.unwrap().restart_policy, RestartPolicy::Never);
    }

    #[test]
    fn managed_by_another_controller_is_left_to_it() {
        for (value, want) in [
            (MANAGED_BY_US, Manager::Us),
            (
                MANAGED_BY_MULTIKUEUE,
                Manager::Other(MANAGED_BY_MULTIKUEUE.into()),
            ),
            (
                "example.com/my-controller",
                Manager::Other("example.com/my-controller".into()),
            ),
        ] {
            let text = GOOD.replace(
                "{cleanPodPolicy: Running}",
                &format!("{{managedBy: {value}}}"),
            );
            assert_eq!(manager(&job(&text).spec), Ok(want), "{value}");
        }
    }

    /// Each case: (text to replace in GOOD, replacement, the exact errors).
    #[test]
    fn bad_input_names_the_field_the_value_and_the_fix() {
        let long = "a".repeat(55);
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            ("metadata: {name: pi}", "metadata: {}".into(), vec![
                "metadata.name: is required: name the job, e.g. pi",
            ]),
            ("metadata: {name: pi}", "metadata: {name: Pi_Job}".into(), vec![
                "metadata.name: \"Pi_Job\" is not a DNS label: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, e.g. pi-job",
            ]),
            ("metadata: {name: pi}", format!("metadata: {{name: {long}}}"), vec![
                "metadata.name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is 55 characters, so pod name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-launcher\" would be 64, over the 63-character DNS label limit: use a name of at most 54 characters",
            ]),
            ("slotsPerWorker: 1", "slotsPerWorker: -1".into(), vec![
                "spec.slotsPerWorker: must be 0 or more, got -1: give the MPI processes per worker, e.g. 1",
            ]),
            ("slotsPerWorker: 1", "slotsPerWorker: 1\n  sshAuthMountPath: ''".into(), vec![
                "spec.sshAuthMountPath: must not be empty: give the .ssh directory of the user MPI runs as, e.g. /root/.ssh or /home/mpiuser/.ssh",
            ]),
            ("slotsPerWorker: 1", "slotsPerWorker: 1\n  sshAuthMountPath: home/.ssh".into(), vec![
                "spec.sshAuthMountPath: \"home/.ssh\" is not an absolute path: give the .ssh directory of the user MPI runs as, e.g. /home/mpiuser/.ssh",
            ]),
            ("slotsPerWorker: 1", "slotsPerWorker: 1\n  mpiImplementation: OpenMpi".into(), vec![
                "spec.mpiImplementation: unknown MPI implementation \"OpenMpi\": use OpenMPI, Intel or MPICH (the names are case-sensitive)",
            ]),
            ("slotsPerWorker: 1", "slotsPerWorker: 1\n  launcherCreationPolicy: WaitForWorkers".into(), vec![
                "spec.launcherCreationPolicy: unknown policy \"WaitForWorkers\": use AtStartup or WaitForWorkersReady",
            ]),
            ("{cleanPodPolicy: Running}", "{cleanPodPolicy: running}".into(), vec![
                "spec.runPolicy.cleanPodPolicy: unknown policy \"running\": use None, Running or All",
            ]),
            ("{cleanPodPolicy: Running}", "{ttlSecondsAfterFinished: -5}".into(), vec![
                "spec.runPolicy.ttlSecondsAfterFinished: must be 0 or more, got -5: give seconds to keep the finished launcher Job, e.g. 60, or leave it unset",
            ]),
            ("{cleanPodPolicy: Running}", "{activeDeadlineSeconds: -1}".into(), vec![
                "spec.runPolicy.activeDeadlineSeconds: must be 0 or more, got -1: give the launcher's time limit in seconds, e.g. 3600, or leave it unset",
            ]),
            ("{cleanPodPolicy: Running}", "{backoffLimit: -2}".into(), vec![
                "spec.runPolicy.backoffLimit: must be 0 or more, got -2: give how often to retry the launcher, e.g. 3, or leave it unset",
            ]),
            ("{cleanPodPolicy: Running}", "{schedulingPolicy: {minAvailable: 4}}".into(), vec![
                "spec.runPolicy.schedulingPolicy.minAvailable: must be between 1 and 3 (the workers and the launcher), got 4: or leave it unset for 3",
            ]),
            ("{cleanPodPolicy: Running}", "{schedulingPolicy: {scheduleTimeoutSeconds: -1}}".into(), vec![
                "spec.runPolicy.schedulingPolicy.scheduleTimeoutSeconds: must be 0 or more, got -1: give how long the scheduler waits for the whole gang, e.g. 300, or leave it unset",
            ]),
            ("{cleanPodPolicy: Running}", "{managedBy: kueue}".into(), vec![
                "spec.runPolicy.managedBy: \"kueue\" is not a controller name: use a domain-prefixed path of at most 63 characters, e.g. kubeflow.org/mpi-operator (this controller) or kueue.x-k8s.io/multikueue, or leave it unset",
            ]),
            ("    Launcher:\n      replicas: 1", "    Launcher:\n      replicas: 2".into(), vec![
                "spec.mpiReplicaSpecs.Launcher.replicas: must be 1, got 2: a job has one launcher",
            ]),
            ("    Launcher:\n      replicas: 1", "    launcher:\n      replicas: 1".into(), vec![
                "spec.mpiReplicaSpecs.launcher: unknown replica type \"launcher\": use Launcher or Worker (the names are case-sensitive)",
                "spec.mpiReplicaSpecs.Launcher: is required: add a Launcher with replicas: 1 and a template whose first container runs mpirun",
            ]),
            ("      replicas: 2\n", "".into(), vec![
                "spec.mpiReplicaSpecs.Worker.replicas: must be at least 1, got unset: set the number of workers, or remove the Worker entry for a launcher-only job",
            ]),
            ("      replicas: 2\n", "      replicas: 0\n".into(), vec![
                "spec.mpiReplicaSpecs.Worker.replicas: must be at least 1, got 0: set the number of workers, or remove the Worker entry for a launcher-only job",
            ]),
            ("      replicas: 2\n", "      replicas: 10001\n".into(), vec![
                "spec.mpiReplicaSpecs.Worker.replicas: must be at most 10000, got 10001",
            ]),
            ("      replicas: 2\n", "      replicas: 2\n      restartPolicy: Always\n".into(), vec![
                "spec.mpiReplicaSpecs.Worker.restartPolicy: \"Always\" is not allowed: use Never or OnFailure",
            ]),
            ("{spec: {containers: [{name: worker, image: mpi}]}}", "{spec: {containers: []}}".into(), vec![
                "spec.mpiReplicaSpecs.Worker.template.spec.containers: must have at least one container: the first one runs sshd",
            ]),
            ("{spec: {containers: [{name: launcher, image: mpi, command: [mpirun, -n, '2', /pi]}]}}", "{metadata: {name: x}}".into(), vec![
                "spec.mpiReplicaSpecs.Launcher.template.spec.containers: must have at least one container: the first one runs mpirun",
            ]),
            ("{spec: {containers: [{name: worker, image: mpi}]}}", "{spec: {containers: {name: worker}}}".into(), vec![
                "spec.mpiReplicaSpecs.Worker.template.spec.containers: invalid type: map, expected a sequence",
            ]),
        ];
        assert!(cases.len() >= 20);
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, &to, 1);
            let got: Vec<String> = match resolve(&job(&text)) {
                Ok(_) => vec![],
                Err(errors) => errors.iter().map(ToString::to_string).collect(),
            };
            assert_eq!(got, want, "for {to:?}");
        }
    }
}
