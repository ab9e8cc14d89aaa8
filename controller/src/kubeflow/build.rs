//! Build: a Kubeflow MPIJob's children, as pure functions of the resolved
//! job. Names, labels, mounts and environment are mpi-operator's; the
//! additions are the launcher's wait init container, Open MPI 5's
//! `PRTE_MCA_*` variables, and keys that are never world-readable.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, KeyToPath, Pod, PodDNSConfig, PodSpec,
    PodTemplateSpec, SecretVolumeSource, Service, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use mpijob_api::contract::{self, secret_keys, GuardArgs, MpiImplementation, WaitArgs};
use mpijob_api::kubeflow::contract::{self as kf, labels};
use mpijob_api::kubeflow::Resolved;
use mpijob_api::sshkey::JobKey;

use crate::core::agent::{
    agent_mount, agent_volume, expect_agent_version, install_agent, readable_keys_for_non_root,
};
use crate::core::context::Config;
use crate::core::meta::JobMeta;

/// What every builder reads: the job's identity, its resolved spec and the
/// cluster's DNS domain.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub meta: &'a JobMeta,
    pub job: &'a Resolved,
    /// `--cluster-domain`, e.g. `cluster.local`; `None` leaves hosts at
    /// `….svc`.
    pub cluster_domain: Option<&'a str>,
}

impl Input<'_> {
    fn name(&self) -> &str {
        &self.meta.name
    }

    /// Metadata of the Service, ConfigMap, Secret and launcher Job.
    fn child(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.meta.namespace.clone()),
            labels: Some(BTreeMap::from([
                (labels::APP.to_string(), self.name().to_string()),
                (labels::JOB_NAME.to_string(), self.name().to_string()),
            ])),
            owner_references: Some(vec![self.meta.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The labels every pod of the job carries (the Service selects them).
    fn pod_labels(&self, role: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                labels::OPERATOR_NAME.to_string(),
                labels::OPERATOR.to_string(),
            ),
            (labels::JOB_NAME.to_string(), self.name().to_string()),
            (labels::JOB_ROLE.to_string(), role.to_string()),
        ])
    }

    fn host(&self, pod: &str) -> String {
        kf::host(pod, self.name(), &self.meta.namespace, self.cluster_domain)
    }

    fn launcher_name(&self) -> String {
        contract::launcher_name(self.name())
    }
}

/// `<name>`: headless, selecting the job's pods. Not-ready addresses are
/// published only when the launcher runs ranks (it is then in the
/// hostfile before it is Ready), as mpi-operator does.
pub fn service(i: Input) -> Service {
    Service {
        metadata: i.child(contract::service_name(i.name())),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(BTreeMap::from([
                (
                    labels::OPERATOR_NAME.to_string(),
                    labels::OPERATOR.to_string(),
                ),
                (labels::JOB_NAME.to_string(), i.name().to_string()),
            ])),
            publish_not_ready_addresses: Some(i.job.run_launcher_as_worker),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The hostfile: the launcher first when it runs ranks, then every worker,
/// in the MPI implementation's format.
pub fn hostfile(i: Input) -> String {
    let slots = i.job.slots_per_worker;
    let line = |host: String| match i.job.mpi_implementation {
        MpiImplementation::OpenMpi => format!("{host} slots={slots}\n"),
        MpiImplementation::Mpich | MpiImplementation::Intel => format!("{host}:{slots}\n"),
    };
    let mut text = String::new();
    if i.job.run_launcher_as_worker {
        text.push_str(&line(i.host(&i.launcher_name())));
    }
    for w in 0..i.job.workers() {
        text.push_str(&line(i.host(&contract::worker_name(i.name(), w))));
    }
    text
}

/// `discover_hosts.sh`: echoes the launcher (when it runs ranks) and every
/// running worker, by pod name, for Horovod's elastic mode.
pub fn discover_hosts(i: Input, running_workers: &[String]) -> String {
    let mut names: Vec<&String> = running_workers.iter().collect();
    names.sort();
    let mut text = String::from("#!/bin/sh\n");
    if i.job.run_launcher_as_worker {
        text.push_str(&format!("echo {}\n", i.host(&i.launcher_name())));
    }
    for n in names {
        text.push_str(&format!("echo {}\n", i.host(n)));
    }
    text
}

/// `<name>-config`, mounted at `/etc/mpi` on the launcher.
pub fn config_map(i: Input, running_workers: &[String]) -> ConfigMap {
    ConfigMap {
        metadata: i.child(kf::config_map_name(i.name())),
        data: Some(config_data(i, running_workers)),
        ..ConfigMap::default()
    }
}

/// The ConfigMap's data; a change means a write.
pub fn config_data(i: Input, running_workers: &[String]) -> BTreeMap<String, String> {
    BTreeMap::from([
        (kf::HOSTFILE_KEY.to_string(), hostfile(i)),
        (
            kf::DISCOVER_HOSTS_KEY.to_string(),
            discover_hosts(i, running_workers),
        ),
    ])
}

/// `<name>-ssh`: the job key pair, `kubernetes.io/ssh-auth`. Made once,
/// immutable.
pub fn secret(i: Input, key: &JobKey) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: i.child(contract::secret_name(i.name())),
        type_: Some("kubernetes.io/ssh-auth".to_string()),
        immutable: Some(true),
        string_data: Some(BTreeMap::from([
            (
                secret_keys::PRIVATE_KEY.to_string(),
                key.private_pem().to_string(),
            ),
            (
                kf::SECRET_PUBLIC_KEY.to_string(),
                format!("{}\n", key.public_openssh()),
            ),
        ])),
        ..k8s_openapi::api::core::v1::Secret::default()
    }
}

/// Worker `index`: the user's template, named and labelled, with the keys
/// mounted in its first container and `sshd -De` when it has no command.
pub fn worker(i: Input, config: &Config, index: u32) -> Pod {
    let worker = i
        .job
        .worker
        .as_ref()
        .expect("workers are built only for jobs that have them");
    let name = contract::worker_name(i.name(), index);
    let template = worker.template.clone();
    let tmeta = template.metadata.unwrap_or_default();
    let mut l = tmeta.labels.unwrap_or_default();
    l.extend(i.pod_labels(labels::ROLE_WORKER));
    let shown_index = index + u32::from(i.job.run_launcher_as_worker);
    l.insert(labels::REPLICA_INDEX.to_string(), shown_index.to_string());

    let mut spec = template.spec.unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = Some(contract::service_name(i.name()));
    if spec.host_network == Some(true) {
        spec.dns_policy = Some("ClusterFirstWithHostNet".to_string());
    }
    let search = format!(
        "{}.{}.svc.{}",
        contract::service_name(i.name()),
        i.meta.namespace,
        i.cluster_domain
            .filter(|d| !d.is_empty())
            .unwrap_or("cluster.local")
    );
    spec.dns_config
        .get_or_insert_with(PodDNSConfig::default)
        .searches
        .get_or_insert_with(Vec::new)
        .push(search);
    spec.restart_policy = Some(worker.restart_policy.as_str().to_string());
    if let Some(c) = spec.containers.first_mut() {
        if c.command.as_ref().is_none_or(Vec::is_empty) && c.args.as_ref().is_none_or(Vec::is_empty)
        {
            c.command = Some(kf::DEFAULT_WORKER_COMMAND.map(String::from).to_vec());
        }
        c.env
            .get_or_insert_with(Vec::new)
            .push(env(kf::ROLE_ENV, labels::ROLE_WORKER));
    }
    mount_keys(i, &mut spec);
    guard(config, i.job.agent_in_image, &mut spec);

    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(i.meta.namespace.clone()),
            labels: Some(l),
            annotations: tmeta.annotations,
            owner_references: Some(vec![i.meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        ..Pod::default()
    }
}

/// `<name>-launcher`: a `batch/v1` Job running the user's launcher
/// template, after an init container that waits for every worker to
/// resolve and answer on the ssh port.
pub fn launcher(i: Input, config: &Config) -> Job {
    let launcher = &i.job.launcher;
    let template = launcher.template.clone();
    let tmeta = template.metadata.unwrap_or_default();
    let mut l = tmeta.labels.unwrap_or_default();
    l.extend(i.pod_labels(labels::ROLE_LAUNCHER));
    if i.job.run_launcher_as_worker {
        l.insert(labels::REPLICA_INDEX.to_string(), "0".to_string());
    }

    let mut spec = template.spec.unwrap_or_default();
    spec.hostname = Some(i.launcher_name());
    spec.subdomain = Some(contract::service_name(i.name()));
    spec.restart_policy = Some(launcher.restart_policy.as_str().to_string());
    if let Some(c) = spec.containers.first_mut() {
        let vars = c.env.get_or_insert_with(Vec::new);
        vars.push(env(kf::ROLE_ENV, labels::ROLE_LAUNCHER));
        vars.extend(launcher_env(i.job));
        c.volume_mounts
            .get_or_insert_with(Vec::new)
            .push(config_mount());
    }
    mount_keys(i, &mut spec);
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: kf::CONFIG_VOLUME.to_string(),
        config_map: Some(ConfigMapVolumeSource {
            name: kf::config_map_name(i.name()),
            items: Some(vec![
                key_to_path(kf::HOSTFILE_KEY, kf::HOSTFILE_KEY, 0o444),
                key_to_path(kf::DISCOVER_HOSTS_KEY, kf::DISCOVER_HOSTS_KEY, 0o555),
            ]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, wait_for_workers(config));

    Job {
        metadata: i.child(i.launcher_name()),
        spec: Some(JobSpec {
            backoff_limit: i.job.backoff_limit,
            active_deadline_seconds: i.job.active_deadline_seconds,
            ttl_seconds_after_finished: i.job.ttl_seconds_after_finished,
            // A replacement pod starts only once the old one has failed, so
            // two launchers never run at once.
            pod_replacement_policy: Some("Failed".to_string()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(l),
                    annotations: tmeta.annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}

/// The launcher's environment: mpi-operator's variables for its MPI
/// implementation (see [`kf::launcher_variables`]), and, when the launcher
/// runs no ranks, no GPUs.
pub fn launcher_env(job: &Resolved) -> Vec<EnvVar> {
    let hostfile = format!("{}/{}", kf::CONFIG_MOUNT_PATH, kf::HOSTFILE_KEY);
    let mut vars = kf::launcher_variables(job.mpi_implementation, job.slots_per_worker, &hostfile);
    if !job.run_launcher_as_worker {
        // The launcher runs no ranks: keep it off the node's GPUs.
        vars.push(("NVIDIA_VISIBLE_DEVICES", String::new()));
        vars.push(("NVIDIA_DRIVER_CAPABILITIES", String::new()));
    }
    vars.into_iter().map(|(k, v)| env(k, &v)).collect()
}

/// The agent, straight from its image, waiting for every host in the
/// hostfile (but the launcher itself) to resolve and answer with an ssh
/// banner. The user's image and command stay as they are.
fn wait_for_workers(config: &Config) -> Container {
    Container {
        name: contract::WAIT_INIT_CONTAINER.to_string(),
        image: Some(config.agent_image.clone()),
        image_pull_policy: Some(config.agent_image_pull_policy.clone()),
        command: Some(contract::agent_wait_command(&WaitArgs::default())),
        volume_mounts: Some(vec![config_mount()]),
        ..Container::default()
    }
}

fn config_mount() -> VolumeMount {
    VolumeMount {
        name: kf::CONFIG_VOLUME.to_string(),
        mount_path: kf::CONFIG_MOUNT_PATH.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The worker's own command (the image's sshd) runs under the agent's
/// guard, copied in by an init container, so that an MPI rank killed by
/// the OOM killer ends the container `OOMKilled` with 137 (see
/// `mpijob-agent guard --help`). A container that sets no `command` runs
/// its image's entrypoint, which the controller cannot know: it stays as
/// it is, and such an OOM kill then shows only in the launcher's failure.
fn guard(config: &Config, baked: bool, spec: &mut PodSpec) {
    let Some(c) = spec.containers.first_mut() else {
        return;
    };
    let Some(command) = c.command.clone().filter(|c| !c.is_empty()) else {
        return;
    };
    let command = command
        .into_iter()
        .chain(c.args.take().unwrap_or_default())
        .collect();
    c.command = Some(contract::agent_guard_command(&GuardArgs { command }));
    if baked {
        // The image's own agent: no copy.
        c.env
            .get_or_insert_with(Vec::new)
            .push(expect_agent_version());
        return;
    }
    c.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(agent_mount());
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, install_agent(config));
    spec.volumes
        .get_or_insert_with(Vec::new)
        .push(agent_volume());
}

/// The job Secret as `id_rsa`, `id_rsa.pub` and `authorized_keys` at
/// `sshAuthMountPath` in the first container. At `/root/.ssh` the files are
/// root's alone (0600). Elsewhere they are 0440 and the pod gets an
/// `fsGroup` (the user's group) where it has none, so that a non-root MPI
/// user can read them while no other user can; mpi-operator leaves them
/// world-readable.
fn mount_keys(i: Input, spec: &mut PodSpec) {
    let root = i.job.ssh_auth_mount_path == contract::DEFAULT_SSH_AUTH_MOUNT_PATH;
    if !root {
        readable_keys_for_non_root(spec);
    }
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: kf::SSH_VOLUME.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(contract::secret_name(i.name())),
            default_mode: Some(if root { 0o600 } else { 0o440 }),
            items: Some(vec![
                key_to_path(secret_keys::PRIVATE_KEY, kf::ssh_files::PRIVATE, None),
                key_to_path(kf::SECRET_PUBLIC_KEY, kf::ssh_files::PUBLIC, None),
                key_to_path(kf::SECRET_PUBLIC_KEY, kf::ssh_files::AUTHORIZED_KEYS, None),
            ]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    if let Some(c) = spec.containers.first_mut() {
        c.volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: kf::SSH_VOLUME.to_string(),
                mount_path: i.job.ssh_auth_mount_path.clone(),
                ..VolumeMount::default()
            });
    }
}

fn key_to_path(key: &str, path: &str, mode: impl Into<Option<i32>>) -> KeyToPath {
    KeyToPath {
        key: key.to_string(),
        path: path.to_string(),
        mode: mode.into(),
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpijob_api::kubeflow::{resolve, MPIJob};

    pub(crate) fn job(spec: &str) -> (MPIJob, Resolved, JobMeta) {
        let job: MPIJob = mpijob_api::yaml::from_str(&format!(
            "apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata: {{name: pi, namespace: team, uid: u-1}}\nspec:\n{spec}"
        ))
        .unwrap();
        let r = resolve(&job).unwrap();
        let meta = JobMeta::of(&job, labels::JOB_NAME).unwrap();
        (job, r, meta)
    }

    const PI: &str = "  sshAuthMountPath: /home/mpiuser/.ssh
  mpiReplicaSpecs:
    Launcher:
      replicas: 1
      template:
        metadata: {labels: {team: a}}
        spec:
          containers:
          - {name: mpi-launcher, image: mpi, command: [mpirun], args: [-n, '2', /home/mpiuser/pi], securityContext: {runAsUser: 1000}}
    Worker:
      replicas: 2
      template:
        spec:
          containers:
          - {name: mpi-worker, image: mpi, securityContext: {runAsUser: 1000}}
";

    fn config() -> Config {
        Config {
            agent_image: "mpijob/agent:test".into(),
            agent_image_pull_policy: "IfNotPresent".into(),
        }
    }

    #[test]
    fn hostfile_lists_every_worker_in_the_implementations_format() {
        let (_, mut r, meta) = job(PI);
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        assert_eq!(
            hostfile(i),
            "pi-worker-0.pi.team.svc slots=1\npi-worker-1.pi.team.svc slots=1\n"
        );
        r.mpi_implementation = MpiImplementation::Mpich;
        r.run_launcher_as_worker = true;
        r.slots_per_worker = 4;
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: Some("cluster.local"),
        };
        assert_eq!(
            hostfile(i),
            "pi-launcher.pi.team.svc.cluster.local:4\npi-worker-0.pi.team.svc.cluster.local:4\npi-worker-1.pi.team.svc.cluster.local:4\n"
        );
        assert_eq!(
            discover_hosts(i, &["pi-worker-1".into(), "pi-worker-0".into()]),
            "#!/bin/sh\necho pi-launcher.pi.team.svc.cluster.local\necho pi-worker-0.pi.team.svc.cluster.local\necho pi-worker-1.pi.team.svc.cluster.local\n"
        );
    }

    #[test]
    fn the_guard_wraps_command_and_args_and_leaves_an_entrypoint_alone() {
        let (_, r, meta) = job(PI);
        // The worker pod's spec for a container with this command and args.
        let spec = |command: Option<Vec<String>>, args: Vec<String>| {
            let mut r = r.clone();
            let c = &mut r
                .worker
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .containers[0];
            (c.command, c.args) = (command, Some(args));
            let i = Input {
                meta: &meta,
                job: &r,
                cluster_domain: None,
            };
            worker(i, &config(), 0).spec.unwrap()
        };
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let with_command = spec(
            Some(args(&["/usr/sbin/sshd"])),
            args(&["-De", "-f", "/home/mpiuser/.sshd_config"]),
        );
        let c = &with_command.containers[0];
        assert_eq!(
            c.command.as_ref().unwrap()[3..],
            ["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"]
        );
        assert_eq!(c.args, None);

        let entrypoint = spec(None, args(&["-De"]));
        let c = &entrypoint.containers[0];
        assert_eq!(c.command, None, "the image's entrypoint is unknown here");
        assert_eq!(c.args.as_ref().unwrap()[0], "-De");
        assert_eq!(entrypoint.init_containers, None);
        assert!(!entrypoint
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "mpijob-agent"));
    }

    #[test]
    fn a_worker_whose_image_holds_the_agent_runs_it_without_a_copy() {
        let (mut k, _, meta) = job(PI);
        k.metadata.annotations = Some(std::collections::BTreeMap::from([(
            contract::AGENT_IN_IMAGE_ANNOTATION.to_string(),
            contract::VERSION.to_string(),
        )]));
        let r = resolve(&k).unwrap();
        assert!(r.agent_in_image);
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        let spec = worker(i, &config(), 0).spec.unwrap();
        assert_eq!(spec.init_containers, None);
        assert!(spec
            .volumes
            .unwrap()
            .iter()
            .all(|v| v.name != "mpijob-agent"));
        let c = &spec.containers[0];
        assert_eq!(
            c.command.as_ref().unwrap()[..2],
            [contract::agent_path(), "guard".to_string()]
        );
        assert!(c
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.mount_path != contract::AGENT_MOUNT_PATH));
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "MPIJOB_EXPECT_AGENT_VERSION"
            && e.value.as_deref() == Some(contract::VERSION)));

        k.metadata.annotations = Some(std::collections::BTreeMap::from([(
            contract::AGENT_IN_IMAGE_ANNOTATION.to_string(),
            "0.0.9".to_string(),
        )]));
        let errors = resolve(&k).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with(&format!(
                "metadata.annotations[\"batch.tensorstack.dev/agent-in-image\"]: \"0.0.9\" is not the agent version this controller runs, {}",
                contract::VERSION
            )),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_worker_runs_sshd_with_the_keys_and_kubeflows_labels() {
        let (_, r, meta) = job(PI);
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        let pod = worker(i, &config(), 1);
        let l = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(l[labels::OPERATOR_NAME], "mpi-operator");
        assert_eq!(l[labels::JOB_NAME], "pi");
        assert_eq!(l[labels::JOB_ROLE], "worker");
        assert_eq!(l[labels::REPLICA_INDEX], "1");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-worker-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("pi"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.dns_config.unwrap().searches.unwrap(),
            vec!["pi.team.svc.cluster.local"]
        );
        let c = &spec.containers[0];
        // The image's sshd, under the agent's guard (OOM kills of ranks).
        assert_eq!(
            c.command.as_ref().unwrap(),
            &[
                "/opt/mpijob/mpijob-agent",
                "guard",
                "--",
                "/usr/sbin/sshd",
                "-De"
            ]
        );
        assert_eq!(c.args, None);
        let init = spec.init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].name, "mpijob-agent-install");
        assert_eq!(
            init[0].image.as_deref(),
            Some(config().agent_image.as_str())
        );
        assert_eq!(c.env.as_ref().unwrap()[0].name, "K_MPI_JOB_ROLE");
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("ssh-auth", "/home/mpiuser/.ssh", None),
                ("mpijob-agent", "/opt/mpijob", Some(true))
            ]
        );
        let v = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "ssh-auth")
            .unwrap();
        let s = v.secret.unwrap();
        assert_eq!(s.secret_name.as_deref(), Some("pi-ssh"));
        assert_eq!(s.default_mode, Some(0o440), "never world-readable");
        let paths: Vec<_> = s
            .items
            .unwrap()
            .into_iter()
            .map(|k| (k.key, k.path))
            .collect();
        assert_eq!(
            paths,
            [
                ("ssh-privatekey".to_string(), "id_rsa".to_string()),
                ("ssh-publickey".into(), "id_rsa.pub".into()),
                ("ssh-publickey".into(), "authorized_keys".into()),
            ]
        );
        // The non-root user reads the keys through its group.
        assert_eq!(spec.security_context.unwrap().fs_group, Some(1000));
    }

    #[test]
    fn the_launcher_job_waits_for_the_workers_and_sets_both_open_mpi_families() {
        let (_, r, meta) = job(PI);
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        let job = launcher(i, &config());
        assert_eq!(job.metadata.name.as_deref(), Some("pi-launcher"));
        assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "pi");
        let spec = job.spec.unwrap();
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
        let t = spec.template;
        let l = t.metadata.unwrap().labels.unwrap();
        assert_eq!(
            (l["team"].as_str(), l[labels::JOB_ROLE].as_str()),
            ("a", "launcher")
        );
        let ps = t.spec.unwrap();
        assert_eq!(ps.hostname.as_deref(), Some("pi-launcher"));
        assert_eq!(ps.restart_policy.as_deref(), Some("OnFailure"));
        let init = &ps.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("mpijob/agent:test"));
        assert_eq!(
            init.command.as_ref().unwrap(),
            &[
                "/mpijob-agent",
                "wait",
                "--port",
                "2222",
                "--hostfile=/etc/mpi/hostfile"
            ]
        );
        let c = &ps.containers[0];
        assert_eq!(
            c.command.as_ref().unwrap(),
            &["mpirun"],
            "the user's command stays"
        );
        let env: Vec<(String, String)> = c
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0].0, "K_MPI_JOB_ROLE");
        assert_eq!(
            get("OMPI_MCA_orte_default_hostfile"),
            Some("/etc/mpi/hostfile")
        );
        assert_eq!(
            get("PRTE_MCA_prte_default_hostfile"),
            Some("/etc/mpi/hostfile")
        );
        assert_eq!(
            get("PRTE_MCA_plm_ssh_args"),
            Some("-o ConnectionAttempts=10")
        );
        assert_eq!(get("OMPI_MCA_orte_set_default_slots"), Some("1"));
        assert_eq!(get("NVIDIA_VISIBLE_DEVICES"), Some(""));
        let cfg = ps
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "mpi-job-config")
            .unwrap();
        let items = cfg.config_map.unwrap().items.unwrap();
        assert_eq!(items[0].mode, Some(0o444));
        assert_eq!(items[1].mode, Some(0o555));
    }

    #[test]
    fn a_launcher_that_runs_ranks_is_listed_first_and_keeps_its_gpus() {
        let (_, mut r, meta) = job(PI);
        r.run_launcher_as_worker = true;
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        assert_eq!(
            service(i).spec.unwrap().publish_not_ready_addresses,
            Some(true)
        );
        assert!(hostfile(i).starts_with("pi-launcher.pi.team.svc slots=1\n"));
        let l = worker(i, &config(), 0).metadata.labels.unwrap();
        assert_eq!(l[labels::REPLICA_INDEX], "1", "index 0 is the launcher's");
        let job = launcher(i, &config());
        let t = job.spec.unwrap().template;
        assert_eq!(
            t.metadata.unwrap().labels.unwrap()[labels::REPLICA_INDEX],
            "0"
        );
        let env = t.spec.unwrap().containers[0].env.clone().unwrap();
        assert!(!env.iter().any(|e| e.name.starts_with("NVIDIA_")));
    }

    #[test]
    fn each_mpi_implementation_gets_its_own_variables() {
        let (_, mut r, _) = job(PI);
        let names = |r: &Resolved| -> Vec<(String, String)> {
            launcher_env(r)
                .into_iter()
                .map(|e| (e.name, e.value.unwrap_or_default()))
                .collect()
        };
        r.slots_per_worker = 4;
        r.mpi_implementation = MpiImplementation::Intel;
        assert_eq!(
            names(&r),
            [
                ("I_MPI_HYDRA_HOST_FILE".into(), "/etc/mpi/hostfile".into()),
                (
                    "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS".into(),
                    "-o ConnectionAttempts=10".into()
                ),
                ("I_MPI_PERHOST".into(), "4".into()),
                ("NVIDIA_VISIBLE_DEVICES".into(), String::new()),
                ("NVIDIA_DRIVER_CAPABILITIES".into(), String::new()),
            ]
        );
        r.mpi_implementation = MpiImplementation::Mpich;
        r.run_launcher_as_worker = true;
        assert_eq!(
            names(&r),
            [
                (
                    "HYDRA_HOST_FILE".to_string(),
                    "/etc/mpi/hostfile".to_string()
                ),
                (
                    "HYDRA_LAUNCH_EXTRA_ARGS".into(),
                    "-o ConnectionAttempts=10".into()
                ),
            ]
        );
    }

    #[test]
    fn the_launcher_job_carries_the_run_policy() {
        let (_, mut r, meta) = job(PI);
        r.backoff_limit = Some(3);
        r.active_deadline_seconds = Some(3600);
        r.ttl_seconds_after_finished = Some(60);
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        let spec = launcher(i, &config()).spec.unwrap();
        assert_eq!(
            (
                spec.backoff_limit,
                spec.active_deadline_seconds,
                spec.ttl_seconds_after_finished
            ),
            (Some(3), Some(3600), Some(60))
        );
        assert_eq!(
            spec.suspend, None,
            "a suspended job has no launcher Job at all"
        );
    }

    #[test]
    fn keys_at_root_ssh_are_roots_alone() {
        let (_, r, meta) = job(&PI
            .replace("/home/mpiuser/.ssh", "/root/.ssh")
            .replace(", securityContext: {runAsUser: 1000}", ""));
        let i = Input {
            meta: &meta,
            job: &r,
            cluster_domain: None,
        };
        let spec = worker(i, &config(), 0).spec.unwrap();
        let v = spec
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "ssh-auth")
            .unwrap();
        assert_eq!(v.secret.unwrap().default_mode, Some(0o600));
        assert_eq!(spec.security_context, None);
    }
}
