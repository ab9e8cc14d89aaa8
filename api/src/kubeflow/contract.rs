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

/// mpi-operator's launcher variables for `implementation`, with the
/// hostfile at `hostfile` and `slots` slots per worker, in its order. For
/// Open MPI, both families: Open MPI 4 reads `OMPI_MCA_orte_*`, Open MPI 5
/// (PRRTE) `PRTE_MCA_*`; with only the first, Open MPI 5 ignores the
/// hostfile and runs every rank on the launcher (mpi-operator #842).
pub fn launcher_variables(
    implementation: crate::contract::MpiImplementation,
    slots: u32,
    hostfile: &str,
) -> Vec<(&'static str, String)> {
    use crate::contract::MpiImplementation as Mpi;
    let (hostfile, slots, ssh_args) = (
        hostfile.to_string(),
        slots.to_string(),
        SSH_ARGS.to_string(),
    );
    match implementation {
        Mpi::OpenMpi => vec![
            ("OMPI_MCA_orte_keep_fqdn_hostnames", "true".to_string()),
            ("OMPI_MCA_orte_default_hostfile", hostfile.clone()),
            ("OMPI_MCA_plm_rsh_args", ssh_args.clone()),
            ("OMPI_MCA_orte_set_default_slots", slots),
            ("PRTE_MCA_prte_keep_fqdn_hostnames", "true".to_string()),
            ("PRTE_MCA_prte_default_hostfile", hostfile),
            ("PRTE_MCA_plm_ssh_args", ssh_args),
        ],
        Mpi::Intel => vec![
            ("I_MPI_HYDRA_HOST_FILE", hostfile),
            ("I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS", ssh_args),
            ("I_MPI_PERHOST", slots),
        ],
        Mpi::Mpich => vec![
            ("HYDRA_HOST_FILE", hostfile),
            ("HYDRA_LAUNCH_EXTRA_ARGS", ssh_args),
        ],
    }
}

/// `<pod>.<job>.<ns>.svc[.<cluster domain>]`: a pod's name in the hostfile.
pub fn host(pod: &str, job: &str, namespace: &str, cluster_domain: Option<&str>) -> String {
    match cluster_domain.filter(|d| !d.is_empty()) {
        Some(d) => format!("{pod}.{job}.{namespace}.svc.{d}"),
        None => format!("{pod}.{job}.{namespace}.svc"),
    }
}
