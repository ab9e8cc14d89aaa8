//! The pod contract between the controller and the agent.
//!
//! Every name that both sides must agree on lives here, so that they cannot
//! drift: object names, DNS names, labels, paths, ports and the environment
//! variables behind the agent's flags. The README's reference section
//! describes the same contract for humans.

mod args;

pub use args::{
    subcommand, GuardArgs, LauncherArgs, MpiImplementation, ProbeArgs, WaitArgs, WorkerArgs,
    DEFAULT_GRACE_PERIOD, DEFAULT_LAUNCHER_TIMEOUT, DEFAULT_PROBE_HOST, DEFAULT_PROBE_TIMEOUT,
    DEFAULT_SLOTS,
};

/// The API group of the primary (T9k) API.
pub const GROUP: &str = "batch.tensorstack.dev";

/// The ssh port the worker agent's sshd listens on, and the launcher dials.
pub const DEFAULT_SSH_PORT: u16 = 2222;
/// Where the job Secret is mounted when the spec does not say.
pub const DEFAULT_SSH_AUTH_MOUNT_PATH: &str = "/root/.ssh";
/// The sshd binary the worker runs when the spec does not say.
pub const DEFAULT_SSHD_PATH: &str = "/usr/sbin/sshd";

/// The name of the agent binary, in images and in the shared emptyDir.
pub const AGENT_BINARY: &str = "mpijob-agent";
/// Where the agent image (`Dockerfile.agent`) keeps the agent binary.
pub const AGENT_IMAGE_PATH: &str = "/mpijob-agent";
/// The emptyDir the init container copies the agent into.
pub const AGENT_VOLUME: &str = "mpijob-agent";
/// Where that emptyDir is mounted in every container of the job's pods.
pub const AGENT_MOUNT_PATH: &str = "/opt/mpijob";
/// The init container that copies the agent.
pub const AGENT_INIT_CONTAINER: &str = "mpijob-agent-install";
/// The init container of a Kubeflow MPIJob's launcher that waits for the
/// workers ([`agent_wait_command`]).
pub const WAIT_INIT_CONTAINER: &str = "mpijob-wait-for-workers";
/// Where a Kubeflow (`kubeflow.org/v2beta1`) launcher finds its hostfile:
/// the job's ConfigMap, mounted at `/etc/mpi`.
pub const DEFAULT_KUBEFLOW_HOSTFILE: &str = "/etc/mpi/hostfile";
/// The job Secret's volume name.
pub const SSH_VOLUME: &str = "mpijob-ssh";
/// The container that runs MPI, when the template names one this way.
pub const MPI_CONTAINER: &str = "mpi-worker";
/// Where the agent writes its one-line summary for the pod status.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// This release's version: the controller's, and the agent's it delivers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// On an MPIJob of either API: its MPI image already holds the agent, of
/// version [`VERSION`] (the annotation's value), at [`agent_path`]. The
/// controller then adds no init container and no agent volume, and the
/// agent starts at once from the image. See `images/baked/`.
pub const AGENT_IN_IMAGE_ANNOTATION: &str = "batch.tensorstack.dev/agent-in-image";

/// The annotation the controller sets on a worker pod when the job is over.
/// A downward API volume exposes it as [`FINISH_FILE_NAME`] under
/// [`PODINFO_MOUNT_PATH`]; the worker agent finishes (stops sshd, exits 0)
/// once that file is non-empty. On bare metal, any non-empty file works.
pub const FINISH_ANNOTATION: &str = "batch.tensorstack.dev/finished";
/// The annotation on the launcher pod that records the spec the job started
/// with (JSON, after defaults). Once the pods exist, the job keeps that
/// shape: the status can be reset or patched, the pods cannot be re-shaped.
pub const STARTED_SPEC_ANNOTATION: &str = "batch.tensorstack.dev/started-spec";
/// On a pod built for `runMode.debug` (value `debug`): a pod built for the
/// other mode is replaced when debug mode is turned on or off.
pub const RUN_MODE_ANNOTATION: &str = "batch.tensorstack.dev/run-mode";
/// The downward API volume carrying [`FINISH_ANNOTATION`].
pub const PODINFO_VOLUME: &str = "mpijob-podinfo";
pub const PODINFO_MOUNT_PATH: &str = "/etc/mpijob/podinfo";
pub const FINISH_FILE_NAME: &str = "finished";

/// Keys of the job Secret (`kubernetes.io/ssh-auth`).
pub mod secret_keys {
    /// The private key, as required by the `kubernetes.io/ssh-auth` type.
    pub const PRIVATE_KEY: &str = "ssh-privatekey";
    /// The same private key under the name ssh and the agent look for.
    pub const ID_ED25519: &str = "id_ed25519";
    pub const ID_ED25519_PUB: &str = "id_ed25519.pub";
    pub const AUTHORIZED_KEYS: &str = "authorized_keys";
    /// Client config for the job's peers, so that plain `ssh <peer>` works
    /// even where `~/.ssh` is this read-only Secret.
    pub const CONFIG: &str = "config";
    /// The job key pinned as every peer's host key.
    pub const KNOWN_HOSTS: &str = "known_hosts";
}

/// Labels the controller puts on every child object.
pub mod labels {
    /// The MPIJob's name.
    pub const JOB_NAME: &str = "batch.tensorstack.dev/mpi-job-name";
    /// `launcher` or `worker`: the T9k replica type.
    pub const ROLE: &str = "batch.tensorstack.dev/replica-type";
    /// The replica index, `0` for the launcher.
    pub const INDEX: &str = "batch.tensorstack.dev/replica-index";
}

/// Environment variables behind the agent's flags. One name per flag.
pub mod env {
    // Shared by both roles.
    pub const SSH_DIR: &str = "MPIJOB_SSH_DIR";
    pub const PORT: &str = "MPIJOB_SSH_PORT";
    pub const STATE_DIR: &str = "MPIJOB_STATE_DIR";
    pub const LOG_FORMAT: &str = "MPIJOB_LOG_FORMAT";
    // Worker role.
    pub const SSHD_PATH: &str = "MPIJOB_SSHD_PATH";
    pub const LISTEN: &str = "MPIJOB_LISTEN";
    pub const GRACE_PERIOD: &str = "MPIJOB_GRACE_PERIOD";
    pub const PEERS: &str = "MPIJOB_PEERS";
    pub const FINISH_FILE: &str = "MPIJOB_FINISH_FILE";
    /// Extra `sshd_config` lines, one per line of the value.
    pub const SSHD_OPTIONS: &str = "MPIJOB_SSHD_OPTIONS";
    /// `true` turns the worker's OOM watch off (`--no-oom-watch`).
    pub const NO_OOM_WATCH: &str = "MPIJOB_NO_OOM_WATCH";
    // Launcher role.
    pub const HOSTS: &str = "MPIJOB_HOSTS";
    pub const JOB: &str = "MPIJOB_JOB";
    pub const NAMESPACE: &str = "MPIJOB_NAMESPACE";
    pub const WORKERS: &str = "MPIJOB_WORKERS";
    pub const SLOTS: &str = "MPIJOB_SLOTS";
    pub const MPI_HOME: &str = "MPIJOB_MPI_HOME";
    pub const MPI_IMPLEMENTATION: &str = "MPIJOB_MPI_IMPLEMENTATION";
    pub const TIMEOUT: &str = "MPIJOB_TIMEOUT";
    /// `KEY=VALUE` MCA parameters, one per line.
    pub const MCA: &str = "MPIJOB_MCA";
    /// Extra mpirun arguments, one per line.
    pub const EXTRA_MPI_ARGS: &str = "MPIJOB_EXTRA_MPI_ARGS";
    /// Where the one-line summary goes instead of [`super::TERMINATION_LOG`].
    pub const TERMINATION_LOG: &str = "MPIJOB_TERMINATION_LOG";
    // Wait (also reads PORT and TIMEOUT).
    pub const HOSTFILE: &str = "MPIJOB_HOSTFILE";
    /// The agent version the controller expects of an agent baked into
    /// the image ([`super::AGENT_IN_IMAGE_ANNOTATION`]): an agent of
    /// another version exits 2 at once, saying so.
    pub const EXPECT_AGENT_VERSION: &str = "MPIJOB_EXPECT_AGENT_VERSION";
}

/// `<job>-worker-<i>`: the worker pod's name and hostname.
pub fn worker_name(job: &str, index: u32) -> String {
    format!("{job}-worker-{index}")
}

/// `<job>-launcher`: the launcher pod's name.
pub fn launcher_name(job: &str) -> String {
    format!("{job}-launcher")
}

/// `<job>-ssh`: the job Secret holding the ssh key pair.
pub fn secret_name(job: &str) -> String {
    format!("{job}-ssh")
}

/// `<job>`: the headless Service that gives the pods their DNS names.
pub fn service_name(job: &str) -> String {
    job.to_string()
}

/// `<job>-worker-<i>.<job>.<ns>.svc`: the name the launcher dials.
pub fn worker_host(job: &str, namespace: &str, index: u32) -> String {
    format!(
        "{}.{}.{namespace}.svc",
        worker_name(job, index),
        service_name(job)
    )
}

/// The agent binary's path inside a container of the job.
pub fn agent_path() -> String {
    format!("{AGENT_MOUNT_PATH}/{AGENT_BINARY}")
}

/// The init container's command: the agent copies itself into the shared
/// emptyDir (`mpijob-agent install DIR`).
pub fn agent_install_command() -> Vec<String> {
    vec![
        AGENT_IMAGE_PATH.to_string(),
        subcommand::INSTALL.to_string(),
        AGENT_MOUNT_PATH.to_string(),
    ]
}

/// The wait init container's command: the agent image's own binary waits
/// for the hosts of the hostfile (`/mpijob-agent wait …`).
pub fn agent_wait_command(args: &WaitArgs) -> Vec<String> {
    std::iter::once(AGENT_IMAGE_PATH.to_string())
        .chain(args.to_argv())
        .collect()
}

/// A Kubeflow worker container's command under the agent copied into the
/// shared emptyDir (`/opt/mpijob/mpijob-agent guard -- …`).
pub fn agent_guard_command(args: &GuardArgs) -> Vec<String> {
    std::iter::once(agent_path())
        .chain(args.to_argv())
        .collect()
}

/// The finish file inside a worker container.
pub const FINISH_FILE_PATH: &str = "/etc/mpijob/podinfo/finished";

/// The ssh host patterns that name a job's pods, for the worker's
/// `--peers`: the Service's DNS names, fully qualified or not, and the bare
/// pod hostnames (what mpirun uses when it drops the domain).
pub fn peer_patterns(job: &str, namespace: &str) -> Vec<String> {
    let svc = service_name(job);
    vec![
        format!("*.{svc}.{namespace}.svc"),
        format!("*.{svc}.{namespace}.svc.*"),
        format!("{job}-worker-*"),
        launcher_name(job),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(worker_name("pi", 3), "pi-worker-3");
        assert_eq!(launcher_name("pi"), "pi-launcher");
        assert_eq!(secret_name("pi"), "pi-ssh");
        assert_eq!(service_name("pi"), "pi");
        assert_eq!(worker_host("pi", "team-a", 0), "pi-worker-0.pi.team-a.svc");
        assert_eq!(agent_path(), "/opt/mpijob/mpijob-agent");
        assert_eq!(
            agent_wait_command(&WaitArgs::default()),
            [
                "/mpijob-agent",
                "wait",
                "--port",
                "2222",
                "--hostfile=/etc/mpi/hostfile"
            ]
        );
        let guard = GuardArgs {
            command: vec![
                "/usr/sbin/sshd".into(),
                "-De".into(),
                "--".into(),
                "; rm".into(),
            ],
        };
        assert_eq!(
            agent_guard_command(&guard),
            [
                "/opt/mpijob/mpijob-agent",
                "guard",
                "--",
                "/usr/sbin/sshd",
                "-De",
                "--",
                "; rm"
            ]
        );
        assert_eq!(
            FINISH_FILE_PATH,
            format!("{PODINFO_MOUNT_PATH}/{FINISH_FILE_NAME}")
        );
    }
}
