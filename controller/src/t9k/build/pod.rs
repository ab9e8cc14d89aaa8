//! Worker and launcher pods, built from `spec.worker.template`.
//!
//! The MPI container (named `mpi-worker`, or the first container) runs the
//! agent from a shared emptyDir, which an init container fills from the
//! agent image; or, for a job annotated
//! [`contract::AGENT_IN_IMAGE_ANNOTATION`], from the image itself. Every value from the spec goes in as its own argv entry;
//! nothing passes through a shell.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource, ExecAction,
    ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe, SecretVolumeSource, Volume,
    VolumeMount,
};
use mpijob_api::contract::{self, labels};
use mpijob_api::t9k::Resolved;

use super::Role;
use crate::core::agent::{
    agent_mount, agent_volume, expect_agent_version, install_agent, readable_keys_for_non_root,
};
use crate::core::context::Config;
use crate::core::meta::JobMeta;

/// The pod for `role`; `resumed` when it is created while the job is
/// `Resuming` (see [`super::mode`]).
pub fn pod(job: &Resolved, meta: &JobMeta, role: Role, config: &Config, resumed: bool) -> Pod {
    let mode = super::mode::of(job, role, resumed);
    let template: PodTemplateSpec = match role {
        Role::Launcher => job.launcher.clone(),
        Role::Worker(_) => job.worker.clone(),
    };
    let mut spec: PodSpec = template.spec.unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let name = role.pod_name(&meta.name);

    let mut extra = template_meta.labels.unwrap_or_default();
    extra.insert(
        labels::ROLE.to_string(),
        role.replica_type().as_str().to_string(),
    );
    extra.insert(labels::INDEX.to_string(), role.index().to_string());
    let mut metadata = meta.child(name.clone(), extra);
    metadata.annotations = template_meta.annotations;
    if role == Role::Launcher {
        let (key, spec) = crate::t9k::started::annotation(&job.spec);
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key, spec);
    }
    if job.debug {
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                contract::RUN_MODE_ANNOTATION.to_string(),
                RUN_MODE_DEBUG.to_string(),
            );
    }

    spec.hostname = Some(name);
    spec.subdomain = Some(contract::service_name(&meta.name));
    spec.restart_policy = Some("Never".to_string());
    readable_keys_for_non_root(&mut spec);

    let baked = job.agent_in_image;
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !baked {
        volumes.push(agent_volume());
    }
    volumes.extend(job_volumes(meta));

    if mode.skip_template_init {
        spec.init_containers = None;
    }
    if mode.runs_agent() && !baked {
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .insert(0, install_agent(config));
    }

    let index = mpi_container_index(&spec.containers);
    let ssh_dir = job.spec.ssh.ssh_auth_mount_path.clone();
    let c = spec
        .containers
        .get_mut(index)
        .expect("a resolved job's templates list a container");
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    if !baked {
        mounts.push(agent_mount());
    }
    mounts.extend(job_mounts(&ssh_dir));
    c.termination_message_policy = Some("FallbackToLogsOnError".to_string());
    let runs_agent = mode.runs_agent();
    let (command, args) = match mode.command {
        Some(own) => own,
        None => (
            vec![contract::agent_path()],
            role_argv(job, meta, role, mode),
        ),
    };
    c.command = Some(command);
    c.args = Some(args);
    if baked && runs_agent {
        c.env
            .get_or_insert_with(Vec::new)
            .push(expect_agent_version());
    }
    if matches!(role, Role::Worker(_)) && runs_agent {
        c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            name: Some("ssh".to_string()),
            container_port: i32::from(contract::DEFAULT_SSH_PORT),
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        });
        c.readiness_probe.get_or_insert_with(|| Probe {
            exec: Some(ExecAction {
                command: Some(
                    std::iter::once(contract::agent_path())
                        .chain(contract::ProbeArgs::default().to_argv())
                        .collect(),
                ),
            }),
            period_seconds: Some(2),
            timeout_seconds: Some(2),
            ..Probe::default()
        });
    }

    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

/// The container that runs MPI: `mpi-worker`, or the first.
pub fn mpi_container_index(containers: &[Container]) -> usize {
    containers
        .iter()
        .position(|c| c.name == contract::MPI_CONTAINER)
        .unwrap_or(0)
}

/// The value of [`contract::RUN_MODE_ANNOTATION`] on a debug-mode pod.
pub const RUN_MODE_DEBUG: &str = "debug";

/// Whether `pod` was built for debug mode.
pub fn built_for_debug(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(contract::RUN_MODE_ANNOTATION))
        .is_some_and(|v| v == RUN_MODE_DEBUG)
}

/// [`role_args`] with a run mode's changes to the launcher.
fn role_argv(
    job: &Resolved,
    meta: &JobMeta,
    role: Role,
    mode: super::mode::Override,
) -> Vec<String> {
    if role != Role::Launcher {
        return role_args(job, meta, role);
    }
    let mut args = launcher_args(job, meta);
    args.hold = mode.hold;
    if let Some(cmd) = mode.mpirun_cmd {
        args.cmd = cmd;
    }
    args.to_argv()
}

/// The agent's arguments for a role, built through the pod contract.
pub fn role_args(job: &Resolved, meta: &JobMeta, role: Role) -> Vec<String> {
    let spec = &job.spec;
    match role {
        Role::Worker(_) => contract::WorkerArgs {
            ssh_dir: spec.ssh.ssh_auth_mount_path.clone().into(),
            sshd_path: spec.ssh.sshd_path.clone().into(),
            peers: contract::peer_patterns(&meta.name, &meta.namespace),
            ..contract::WorkerArgs::default()
        }
        .to_argv(),
        Role::Launcher => launcher_args(job, meta).to_argv(),
    }
}

/// The launcher agent's arguments, as the spec asks.
pub fn launcher_args(job: &Resolved, meta: &JobMeta) -> contract::LauncherArgs {
    let spec = &job.spec;
    contract::LauncherArgs {
        job: Some(meta.name.clone()),
        namespace: Some(meta.namespace.clone()),
        workers: Some(job.workers),
        // The T9k API has no slots field: the ranks per worker come
        // from what `extraMPIArgs` asks of mpirun (`-N 2`, `-np 8`).
        slots: mpijob_api::slots::of_valid(
            &spec.worker().extra_mpi_args,
            job.workers.max(1),
            spec.worker().processes_per_worker,
        ),
        ssh_dir: spec.ssh.ssh_auth_mount_path.clone().into(),
        mpi_home: spec.mpi_home.clone().map(Into::into),
        mca: contract::LauncherArgs::mca_entries(&spec.mca),
        extra_mpi_args: spec.worker().extra_mpi_args.clone(),
        cmd: spec.worker().cmd.clone(),
        ..contract::LauncherArgs::default()
    }
}

/// The Secret's and the downward API's volumes (the agent's is added
/// unless the image holds the agent).
fn job_volumes(meta: &JobMeta) -> Vec<Volume> {
    vec![
        Volume {
            name: contract::SSH_VOLUME.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(contract::secret_name(&meta.name)),
                // Owner and group only: never world-readable.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: contract::PODINFO_VOLUME.to_string(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: contract::FINISH_FILE_NAME.to_string(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!(
                            "metadata.annotations['{}']",
                            contract::FINISH_ANNOTATION
                        ),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

fn job_mounts(ssh_dir: &str) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    vec![
        mount(contract::SSH_VOLUME, ssh_dir),
        mount(contract::PODINFO_VOLUME, contract::PODINFO_MOUNT_PATH),
    ]
}

/// The labels of one of the job's pods: the job, its role and its index.
pub fn role_labels(job: &str, role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::JOB_NAME.to_string(), job.to_string()),
        (
            labels::ROLE.to_string(),
            role.replica_type().as_str().to_string(),
        ),
        (labels::INDEX.to_string(), role.index().to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::t9k::build::fixtures;

    fn config() -> Config {
        Config {
            agent_image: "mpijob/agent:test".into(),
            agent_image_pull_policy: "Never".into(),
        }
    }

    fn build(spec: &str, role: Role) -> Pod {
        let job = fixtures::job(spec);
        let meta = JobMeta::of(&job, labels::JOB_NAME).unwrap();
        pod(&fixtures::resolved(&job), &meta, role, &config(), false)
    }

    fn mpi(p: &Pod) -> &Container {
        p.spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .find(|c| c.name == "mpi-worker")
            .unwrap()
    }

    #[test]
    fn a_worker_runs_the_agent_worker_role_with_the_spec_values() {
        let p = build(fixtures::PI, Role::Worker(1));
        assert_eq!(p.metadata.name.as_deref(), Some("pi-worker-1"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l["batch.tensorstack.dev/mpi-job-name"], "pi");
        assert_eq!(l["batch.tensorstack.dev/replica-type"], "worker");
        assert_eq!(l["batch.tensorstack.dev/replica-index"], "1");
        assert_eq!(l["team"], "a", "template labels are kept");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-worker-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("pi"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let c = mpi(&p);
        assert_eq!(c.command.as_ref().unwrap(), &["/opt/mpijob/mpijob-agent"]);
        assert_eq!(
            c.args.as_ref().unwrap(),
            &[
                "worker",
                "--port",
                "2222",
                "--ssh-dir=/root/.ssh",
                "--sshd-path=/usr/sbin/sshd",
                "--finish-file=/etc/mpijob/podinfo/finished",
                "--peers=*.pi.team.svc,*.pi.team.svc.*,pi-worker-*,pi-launcher",
            ]
        );
        assert_eq!(c.image.as_deref(), Some("mpi:1"));
        // The sidecar is untouched.
        assert_eq!(spec.containers[0].name, "sidecar");
        assert!(spec.containers[0].args.is_none());
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(probe.command.as_ref().unwrap()[1], "probe");
    }

    #[test]
    fn the_init_container_copies_the_agent_and_the_secret_is_mounted_read_only() {
        let p = build(fixtures::PI, Role::Worker(0));
        let spec = p.spec.as_ref().unwrap();
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("mpijob/agent:test"));
        assert_eq!(
            init.command.as_ref().unwrap(),
            &["/mpijob-agent", "install", "/opt/mpijob"]
        );
        let vols = spec.volumes.as_ref().unwrap();
        let ssh = vols
            .iter()
            .find(|v| v.name == "mpijob-ssh")
            .unwrap()
            .secret
            .as_ref()
            .unwrap();
        assert_eq!(ssh.secret_name.as_deref(), Some("pi-ssh"));
        assert_eq!(ssh.default_mode, Some(0o440));
        let mounts = mpi(&p).volume_mounts.as_ref().unwrap();
        let m = mounts.iter().find(|m| m.name == "mpijob-ssh").unwrap();
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            ("/root/.ssh", Some(true))
        );
        let podinfo = vols.iter().find(|v| v.name == "mpijob-podinfo").unwrap();
        let item = &podinfo
            .downward_api
            .as_ref()
            .unwrap()
            .items
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            item.field_ref.as_ref().unwrap().field_path,
            "metadata.annotations['batch.tensorstack.dev/finished']"
        );
    }

    #[test]
    fn an_image_with_the_agent_gets_no_copy_and_is_told_the_version() {
        let mut job = fixtures::job(fixtures::PI);
        job.metadata.annotations = Some(BTreeMap::from([(
            contract::AGENT_IN_IMAGE_ANNOTATION.to_string(),
            contract::VERSION.to_string(),
        )]));
        let meta = JobMeta::of(&job, labels::JOB_NAME).unwrap();
        for role in [Role::Launcher, Role::Worker(1)] {
            let p = pod(&fixtures::resolved(&job), &meta, role, &config(), false);
            let spec = p.spec.as_ref().unwrap();
            assert!(
                spec.init_containers.as_ref().is_none_or(Vec::is_empty),
                "{role:?}"
            );
            let vols = spec.volumes.as_ref().unwrap();
            assert!(vols.iter().all(|v| v.name != contract::AGENT_VOLUME));
            let c = mpi(&p);
            assert!(c
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .all(|m| m.mount_path != contract::AGENT_MOUNT_PATH));
            // The image's own agent, at the usual path.
            assert_eq!(c.command.as_ref().unwrap(), &[contract::agent_path()]);
            let env = c.env.as_ref().unwrap();
            let v = env
                .iter()
                .find(|e| e.name == "MPIJOB_EXPECT_AGENT_VERSION")
                .unwrap();
            assert_eq!(v.value.as_deref(), Some(contract::VERSION));
        }
        // Without the annotation: the copy, and no version check.
        let p = build(fixtures::PI, Role::Worker(0));
        assert!(mpi(&p)
            .env
            .iter()
            .flatten()
            .all(|e| e.name != "MPIJOB_EXPECT_AGENT_VERSION"));
    }

    #[test]
    fn the_launcher_gets_every_value_as_its_own_argument() {
        let spec = "  mpiHome: /usr/local\n  mca: {btl: ^openib, pml: ob1}\n  ssh: {sshAuthMountPath: /home/u/.ssh}\n  worker:\n    replicas: 3\n    extraMPIArgs: [-N, '4', --bind-to, none]\n    cmd: [python, 'train.py; rm -rf /', --lr, '0.1']\n    template: {spec: {containers: [{name: main, image: x}]}}\n";
        let p = build(spec, Role::Launcher);
        assert_eq!(p.metadata.name.as_deref(), Some("pi-launcher"));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            c.args.as_ref().unwrap(),
            &[
                "launcher",
                "--port",
                "2222",
                "--job",
                "pi",
                "--namespace",
                "team",
                "--workers",
                "3",
                // `-N 4`: 4 slots on each worker.
                "--slots",
                "4",
                "--ssh-dir=/home/u/.ssh",
                "--mpi-home=/usr/local",
                "--mca=btl=^openib",
                "--mca=pml=ob1",
                "--extra-mpi-args=-N",
                "--extra-mpi-args=4",
                "--extra-mpi-args=--bind-to",
                "--extra-mpi-args=none",
                "--",
                "python",
                "train.py; rm -rf /",
                "--lr",
                "0.1",
            ]
        );
        assert!(
            c.readiness_probe.is_none(),
            "the launcher needs no readiness"
        );
        assert!(c.ports.is_none());
    }

    #[test]
    fn non_root_pods_get_a_group_that_can_read_the_keys() {
        let spec = "  worker:\n    cmd: [x]\n    template: {spec: {securityContext: {runAsUser: 1000}, containers: [{name: mpi-worker, image: x}]}}\n";
        let sc = build(spec, Role::Worker(0))
            .spec
            .unwrap()
            .security_context
            .unwrap();
        assert_eq!(sc.fs_group, Some(1000));
        let spec = "  worker:\n    cmd: [x]\n    template: {spec: {containers: [{name: mpi-worker, image: x, securityContext: {runAsUser: 1000}}], securityContext: {runAsGroup: 50}}}\n";
        let sc = build(spec, Role::Worker(0))
            .spec
            .unwrap()
            .security_context
            .unwrap();
        assert_eq!(sc.fs_group, Some(50));
        let spec = "  worker:\n    cmd: [x]\n    template: {spec: {securityContext: {runAsUser: 1000, fsGroup: 7}, containers: [{name: mpi-worker, image: x}]}}\n";
        let sc = build(spec, Role::Worker(0))
            .spec
            .unwrap()
            .security_context
            .unwrap();
        assert_eq!(sc.fs_group, Some(7), "a template's fsGroup is kept");
        assert!(build(fixtures::PI, Role::Worker(0))
            .spec
            .unwrap()
            .security_context
            .is_none());
    }

    #[test]
    fn debug_mode_runs_the_debug_command_instead() {
        let spec = "  runMode: {debug: {enabled: true, replicaSpecs: [{type: master, command: [sleep, inf], skipInitContainer: true}]}}\n  worker:\n    cmd: [x]\n    template: {spec: {containers: [{name: mpi-worker, image: x}]}}\n";
        let launcher = build(spec, Role::Launcher);
        let c = mpi(&launcher);
        assert_eq!(c.command.as_ref().unwrap(), &["sleep", "inf"]);
        assert!(c.args.as_ref().unwrap().is_empty());
        assert!(launcher.spec.as_ref().unwrap().init_containers.is_none());
        assert!(built_for_debug(&launcher));
        // Workers have no debug entry: they run the agent as usual.
        let worker = build(spec, Role::Worker(0));
        assert_eq!(mpi(&worker).args.as_ref().unwrap()[0], "worker");
        assert!(built_for_debug(&worker));
        assert!(worker.spec.unwrap().init_containers.is_some());
    }

    fn init_names(p: &Pod) -> Vec<String> {
        p.spec
            .as_ref()
            .unwrap()
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    }

    #[test]
    fn a_debug_launcher_without_a_command_holds_after_the_hostfile() {
        let spec = "  runMode: {debug: {enable: true, replicaSpecs: [{type: launcher, skipInitContainer: true}, {type: worker, command: [sleep, inf]}]}}\n  worker:\n    cmd: [x]\n    template: {spec: {initContainers: [{name: fetch-data, image: x}], containers: [{name: mpi-worker, image: x}]}}\n";
        let launcher = build(spec, Role::Launcher);
        let args = mpi(&launcher).args.clone().unwrap();
        assert_eq!(args[0], "launcher");
        assert!(args.contains(&"--hold".to_string()), "{args:?}");
        assert_eq!(args.last().unwrap(), "x");
        // The template's own init container is skipped, never the agent's.
        assert_eq!(init_names(&launcher), ["mpijob-agent-install"]);
        // A worker with a command of its own needs no agent, and so no
        // agent probe or ssh port either.
        let worker = build(spec, Role::Worker(0));
        let c = mpi(&worker);
        assert_eq!(c.command.as_ref().unwrap(), &["sleep", "inf"]);
        assert!(c.readiness_probe.is_none() && c.ports.is_none());
        assert_eq!(init_names(&worker), ["fetch-data"]);
        // Without debug, nothing holds and nothing is marked.
        let plain = build(fixtures::PI, Role::Launcher);
        assert!(!mpi(&plain)
            .args
            .as_ref()
            .unwrap()
            .contains(&"--hold".to_string()));
        assert!(!built_for_debug(&plain));
    }

    #[test]
    fn a_resumed_launcher_starts_the_resume_command_under_mpirun() {
        let spec = "  runMode: {pause: {enable: false, resumeSpecs: [{type: launcher, command: [/opt/pi], args: ['7'], skipInitContainer: true}]}}\n  worker:\n    cmd: [/opt/pi, '100']\n    template: {spec: {initContainers: [{name: fetch-data, image: x}], containers: [{name: mpi-worker, image: x}]}}\n";
        let job = fixtures::job(spec);
        let meta = JobMeta::of(&job, labels::JOB_NAME).unwrap();
        let fresh = pod(
            &fixtures::resolved(&job),
            &meta,
            Role::Launcher,
            &config(),
            false,
        );
        let resumed = pod(
            &fixtures::resolved(&job),
            &meta,
            Role::Launcher,
            &config(),
            true,
        );
        let tail = |p: &Pod| {
            let a = mpi(p).args.clone().unwrap();
            let at = a.iter().position(|x| x == "--").unwrap();
            a[at + 1..].to_vec()
        };
        assert_eq!(tail(&fresh), ["/opt/pi", "100"]);
        assert_eq!(tail(&resumed), ["/opt/pi", "7"]);
        assert_eq!(init_names(&fresh), ["mpijob-agent-install", "fetch-data"]);
        assert_eq!(init_names(&resumed), ["mpijob-agent-install"]);
    }
}
