//! The agent in a pod, for every API: the init container that copies it
//! in, its volume and mount, and the key files' readability.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec, Volume, VolumeMount,
};
use mpijob_api::contract;

use super::context::Config;

/// The init container that copies the agent into the shared emptyDir.
pub fn install_agent(config: &Config) -> Container {
    Container {
        name: contract::AGENT_INIT_CONTAINER.to_string(),
        image: Some(config.agent_image.clone()),
        image_pull_policy: Some(config.agent_image_pull_policy.clone()),
        command: Some(contract::agent_install_command()),
        volume_mounts: Some(vec![VolumeMount {
            name: contract::AGENT_VOLUME.to_string(),
            mount_path: contract::AGENT_MOUNT_PATH.to_string(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The emptyDir the agent is copied into.
pub fn agent_volume() -> Volume {
    Volume {
        name: contract::AGENT_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// Where the job's containers see the agent: read-only.
pub fn agent_mount() -> VolumeMount {
    VolumeMount {
        name: contract::AGENT_VOLUME.to_string(),
        mount_path: contract::AGENT_MOUNT_PATH.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// `MPIJOB_EXPECT_AGENT_VERSION`: an agent baked into the image checks
/// that it is this release's.
pub fn expect_agent_version() -> EnvVar {
    EnvVar {
        name: contract::env::EXPECT_AGENT_VERSION.to_string(),
        value: Some(contract::VERSION.to_string()),
        ..EnvVar::default()
    }
}

/// The key files are mode 0440. A pod that runs as a non-root user needs a
/// group that can read them: when the template sets no `fsGroup`, use the
/// pod's group (or its user id), which the kubelet adds to every
/// container's groups and gives the Secret's files.
pub fn readable_keys_for_non_root(spec: &mut PodSpec) {
    let first_container_user = spec
        .containers
        .iter()
        .find_map(|c| c.security_context.as_ref().and_then(|s| s.run_as_user));
    let sc = spec
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    let user = sc.run_as_user.or(first_container_user);
    if sc.fs_group.is_none() {
        if let Some(uid) = user.filter(|u| *u != 0) {
            sc.fs_group = Some(sc.run_as_group.unwrap_or(uid));
        }
    }
    if *sc == PodSecurityContext::default() {
        spec.security_context = None;
    }
}
