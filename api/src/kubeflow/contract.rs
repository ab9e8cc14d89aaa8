//! The names a Kubeflow MPIJob's children carry, exactly as mpi-operator
//! writes them, so that tools keyed on them (Kueue, dashboards, `kubectl -l`)
//! keep working.

/// Labels on the job's pods.
pub mod labels {
    /// `mpi-operator` on every pod of every job: the Service selects on it.
    pub const OPERATOR_NAME: &str = "training.kubeflow.org/operator-name";
    /// The operator-name label's value.
    pub const OPERATOR: &str = "mpi-operator";
    /// The MPIJob's name. Also on the Service, ConfigMap, Secret and launcher
    /// Job (an addition to mpi-operator's `app` label), so that one watch
    /// with this selector sees all of a job's children.
    pub const JOB_NAME: &str = "training.kubeflow.org/job-name";
    /// `launcher` or `worker`.
    pub const JOB_ROLE: &str = "training.kubeflow.org/job-role";
    /// The worker's index (plus one when the launcher runs ranks too).
    pub const REPLICA_INDEX: &str = "training.kubeflow.org/replica-index";
    /// `app=<job>` on the Service, ConfigMap, Secret and launcher Job.
    pub const APP: &str = "app";
    pub const ROLE_LAUNCHER: &str = "launcher";
    pub const ROLE_WORKER: &str = "worker";
}

/// `<job>-config`: the hostfile and `discover_hosts.sh`.
pub fn config_map_name(job: &str) -> String {
    format!("{job}-config")
}

/// Where the ConfigMap is mounted on the launcher.
pub const CONFIG_MOUNT_PATH: &str = "/etc/mpi";
/// The ConfigMap's volume name.
pub const CONFIG_VOLUME: &str = "mpi-job-config";
/// The hostfile's key in the ConfigMap.
pub const HOSTFILE_KEY: &str = "hostfile";
/// The host discovery script's key (Horovod elastic reads it).
pub const DISCOVER_HOSTS_KEY: &str = "discover_hosts.sh";
/// The job Secret's volume name.
pub const SSH_VOLUME: &str = "ssh-auth";
/// The worker's command when its template gives none.
pub const DEFAULT_WORKER_COMMAND: [&str; 2] = ["/usr/sbin/sshd", "-De"];
/// The environment variable naming the pod's role.
pub const ROLE_ENV: &str = "K_MPI_JOB_ROLE";
/// What ssh gets through each MPI's variables, so that a worker whose sshd is
/// a moment late is retried instead of failing the launch.
pub const SSH_ARGS: &str = "-o ConnectionAttempts=10";
/// The Secret's files in the ssh volume: the key as `id_rsa` (whatever its
/// type: OpenSSH reads the type from the file), its public half as
/// `id_rsa.pub` and `authorized_keys`.
pub mod ssh_files {
    pub const PRIVATE: &str = "id_rsa";
    pub const PUBLIC: &str = "id_rsa.pub";
    pub const AUTHORIZED_KEYS: &str = "authorized_keys";
}
/// The Secret's key for the public half (the private half is under
/// [`crate::contract::secret_keys::PRIVATE_KEY`]).
pub const SECRET_PUBLIC_KEY: &str = "ssh-publickey";

/// `<pod>.<job>.<ns>.svc[.<cluster domain>]`: a pod's name in the hostfile.
pub fn host(pod: &str, job: &str, namespace: &str, cluster_domain: Option<&str>) -> String {
    match cluster_domain.filter(|d| !d.is_empty()) {
        Some(d) => format!("{pod}.{job}.{namespace}.svc.{d}"),
        None => format!("{pod}.{job}.{namespace}.svc"),
    }
}
