//! The agent's command line, as typed values.
//!
//! The controller (pod specs) and local mode build the agent's argv only
//! through these types, and the agent parses it with its own clap
//! definitions back into the same types: one definition of every flag. A
//! test in the agent round-trips each field through that parser.
//!
//! Every value is its own argv entry, and values that may start with `-`
//! are written as `--flag=value`, so no value can pass as an option.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{
    DEFAULT_KUBEFLOW_HOSTFILE, DEFAULT_SSHD_PATH, DEFAULT_SSH_AUTH_MOUNT_PATH, DEFAULT_SSH_PORT,
    TERMINATION_LOG,
};
use crate::duration;

/// Slots (ranks) per worker in the hostfile when nothing says otherwise.
pub const DEFAULT_SLOTS: u32 = 1;
/// How long sshd or mpirun gets after SIGTERM before SIGKILL.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How long the launcher waits for the workers.
pub const DEFAULT_LAUNCHER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the readiness probe waits for the ssh banner.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The address the readiness probe dials.
pub const DEFAULT_PROBE_HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The agent's subcommands, as they appear on the command line.
pub mod subcommand {
    pub const WORKER: &str = "worker";
    pub const LAUNCHER: &str = "launcher";
    pub const PROBE: &str = "probe";
    pub const INSTALL: &str = "install";
    pub const WAIT: &str = "wait";
    pub const GUARD: &str = "guard";
}

/// The MPI implementations the launcher knows, by their flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpiImplementation {
    OpenMpi,
    Mpich,
    Intel,
}

impl MpiImplementation {
    pub const ALL: [MpiImplementation; 3] = [Self::OpenMpi, Self::Mpich, Self::Intel];

    /// The value of `--mpi-implementation`.
    pub fn flag_value(self) -> &'static str {
        match self {
            Self::OpenMpi => "openmpi",
            Self::Mpich => "mpich",
            Self::Intel => "intel",
        }
    }

    /// The name people know it by.
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenMpi => "Open MPI",
            Self::Mpich => "MPICH",
            Self::Intel => "Intel MPI",
        }
    }
}

impl FromStr for MpiImplementation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|i| i.flag_value() == s)
            .ok_or_else(|| {
                format!("{s:?}: unknown MPI implementation; use openmpi, mpich or intel")
            })
    }
}

/// `mpijob-agent worker …`: sshd with the job's keys, as PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// Where the job's key pair is mounted (`sshAuthMountPath`).
    pub ssh_dir: PathBuf,
    /// The OpenSSH sshd to run.
    pub sshd_path: PathBuf,
    /// The port sshd listens on.
    pub port: u16,
    /// The address sshd listens on; all addresses when `None`.
    pub listen: Option<IpAddr>,
    /// A private directory for the agent's files; the agent picks one when
    /// `None`.
    pub state_dir: Option<PathBuf>,
    /// The job's hosts as ssh host patterns.
    pub peers: Vec<String>,
    pub grace_period: Duration,
    /// The file that, once non-empty, says the job is over: by default the
    /// downward API file of [`super::FINISH_ANNOTATION`].
    pub finish_file: PathBuf,
    /// Extra `sshd_config` lines.
    pub sshd_options: Vec<String>,
    /// Stop and exit 137 when the memory cgroup sees an OOM kill.
    pub oom_watch: bool,
}

impl Default for WorkerArgs {
    fn default() -> Self {
        WorkerArgs {
            ssh_dir: DEFAULT_SSH_AUTH_MOUNT_PATH.into(),
            sshd_path: DEFAULT_SSHD_PATH.into(),
            port: DEFAULT_SSH_PORT,
            listen: None,
            state_dir: None,
            peers: Vec::new(),
            grace_period: DEFAULT_GRACE_PERIOD,
            finish_file: super::FINISH_FILE_PATH.into(),
            sshd_options: Vec::new(),
            oom_watch: true,
        }
    }
}

impl WorkerArgs {
    /// The argv after the agent's path: `worker --port … --ssh-dir …`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut a = Argv::new(subcommand::WORKER);
        a.value("--port", self.port);
        a.path("--ssh-dir", &self.ssh_dir);
        a.path("--sshd-path", &self.sshd_path);
        if let Some(listen) = self.listen {
            a.value("--listen", listen);
        }
        if let Some(dir) = &self.state_dir {
            a.path("--state-dir", dir);
        }
        a.path("--finish-file", &self.finish_file);
        if self.grace_period != DEFAULT_GRACE_PERIOD {
            a.duration("--grace-period", self.grace_period);
        }
        if !self.peers.is_empty() {
            a.joined("--peers", &self.peers.join(","));
        }
        for o in &self.sshd_options {
            a.joined("--sshd-option", o);
        }
        if !self.oom_watch {
            a.flag("--no-oom-watch");
        }
        a.0
    }
}

/// `mpijob-agent launcher …`: wait for the workers, then mpirun, as PID 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherArgs {
    /// The worker hosts; or give `job`, `namespace` and `workers`, or
    /// `hostfile`.
    pub hosts: Vec<String>,
    /// An MPI hostfile to take the workers and their slots from (Open
    /// MPI's `host slots=N` or MPICH's `host:N`): bare metal, where the
    /// hosts are already listed.
    pub hostfile: Option<PathBuf>,
    pub job: Option<String>,
    pub namespace: Option<String>,
    pub workers: Option<u32>,
    /// Slots (ranks) per worker in the hostfile.
    pub slots: u32,
    /// The workers' ssh port.
    pub port: u16,
    pub ssh_dir: PathBuf,
    pub state_dir: Option<PathBuf>,
    /// mpirun is `<mpi_home>/bin/mpirun`; `mpirun` on PATH when `None`.
    pub mpi_home: Option<PathBuf>,
    /// Detected from `mpirun --version` when `None`.
    pub mpi_implementation: Option<MpiImplementation>,
    /// MCA parameters, each `KEY=VALUE` (checked by the launcher).
    pub mca: Vec<String>,
    pub extra_mpi_args: Vec<String>,
    /// How long to wait for the workers.
    pub timeout: Duration,
    pub grace_period: Duration,
    /// Where the one-line summary goes.
    pub termination_log: PathBuf,
    /// Debug mode: wait for the workers and write the hostfile and the ssh
    /// client files, then print the mpirun command and stay up until
    /// stopped, instead of running it.
    pub hold: bool,
    /// `cmd` is a Kubeflow MPIJob launcher's own command: run it unchanged,
    /// with mpi-operator's variables and the agent's ssh set-up.
    pub kubeflow: bool,
    /// The MPI program and its arguments.
    pub cmd: Vec<String>,
}

impl Default for LauncherArgs {
    fn default() -> Self {
        LauncherArgs {
            hosts: Vec::new(),
            hostfile: None,
            job: None,
            namespace: None,
            workers: None,
            slots: DEFAULT_SLOTS,
            port: DEFAULT_SSH_PORT,
            ssh_dir: DEFAULT_SSH_AUTH_MOUNT_PATH.into(),
            state_dir: None,
            mpi_home: None,
            mpi_implementation: None,
            mca: Vec::new(),
            extra_mpi_args: Vec::new(),
            timeout: DEFAULT_LAUNCHER_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            termination_log: TERMINATION_LOG.into(),
            hold: false,
            kubeflow: false,
            cmd: Vec::new(),
        }
    }
}

impl LauncherArgs {
    /// `KEY=VALUE`, as [`LauncherArgs::mca`] holds it.
    pub fn mca_entry(key: &str, value: &str) -> String {
        format!("{key}={value}")
    }

    /// [`LauncherArgs::mca`] from key and value pairs.
    pub fn mca_entries<'a>(
        pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Vec<String> {
        pairs
            .into_iter()
            .map(|(k, v)| Self::mca_entry(k, v))
            .collect()
    }

    /// The argv after the agent's path: `launcher --port … -- CMD…`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut a = Argv::new(subcommand::LAUNCHER);
        a.value("--port", self.port);
        if !self.hosts.is_empty() {
            a.joined("--hosts", &self.hosts.join(","));
        }
        if let Some(file) = &self.hostfile {
            a.path("--hostfile", file);
        }
        if let Some(job) = &self.job {
            a.value("--job", job);
        }
        if let Some(ns) = &self.namespace {
            a.value("--namespace", ns);
        }
        if let Some(n) = self.workers {
            a.value("--workers", n);
        }
        a.value("--slots", self.slots);
        a.path("--ssh-dir", &self.ssh_dir);
        if let Some(dir) = &self.state_dir {
            a.path("--state-dir", dir);
        }
        if let Some(home) = &self.mpi_home {
            a.path("--mpi-home", home);
        }
        if let Some(i) = self.mpi_implementation {
            a.value("--mpi-implementation", i.flag_value());
        }
        if self.termination_log.as_os_str() != TERMINATION_LOG {
            a.path("--termination-log", &self.termination_log);
        }
        if self.timeout != DEFAULT_LAUNCHER_TIMEOUT {
            a.duration("--timeout", self.timeout);
        }
        if self.grace_period != DEFAULT_GRACE_PERIOD {
            a.duration("--grace-period", self.grace_period);
        }
        for m in &self.mca {
            a.joined("--mca", m);
        }
        for arg in &self.extra_mpi_args {
            a.joined("--extra-mpi-args", arg);
        }
        if self.hold {
            a.flag("--hold");
        }
        if self.kubeflow {
            a.flag("--kubeflow");
        }
        a.0.push("--".into());
        a.0.extend(self.cmd.iter().cloned());
        a.0
    }
}

/// `mpijob-agent probe …`: exit 0 once sshd answers with its banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeArgs {
    pub port: u16,
    pub host: IpAddr,
    pub timeout: Duration,
}

impl Default for ProbeArgs {
    fn default() -> Self {
        ProbeArgs {
            port: DEFAULT_SSH_PORT,
            host: DEFAULT_PROBE_HOST,
            timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

impl ProbeArgs {
    pub fn to_argv(&self) -> Vec<String> {
        let mut a = Argv::new(subcommand::PROBE);
        a.value("--port", self.port);
        if self.host != DEFAULT_PROBE_HOST {
            a.value("--host", self.host);
        }
        if self.timeout != DEFAULT_PROBE_TIMEOUT {
            a.duration("--timeout", self.timeout);
        }
        a.0
    }
}

/// `mpijob-agent wait …`: the init container of a Kubeflow MPIJob's
/// launcher. Exit 0 once every other host in the hostfile resolves in DNS
/// and answers with an ssh banner, so that the user's own mpirun finds
/// every worker up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitArgs {
    /// The MPI hostfile to read the hosts from (Open MPI `host slots=N` or
    /// Hydra `host:N`): by default Kubeflow's ConfigMap mount.
    pub hostfile: PathBuf,
    /// The hosts' ssh port.
    pub port: u16,
    /// How long to wait for the hosts.
    pub timeout: Duration,
}

impl Default for WaitArgs {
    fn default() -> Self {
        WaitArgs {
            hostfile: DEFAULT_KUBEFLOW_HOSTFILE.into(),
            port: DEFAULT_SSH_PORT,
            timeout: DEFAULT_LAUNCHER_TIMEOUT,
        }
    }
}

impl WaitArgs {
    /// The argv after the agent's path: `wait --port … --hostfile=…`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut a = Argv::new(subcommand::WAIT);
        a.value("--port", self.port);
        a.path("--hostfile", &self.hostfile);
        if self.timeout != DEFAULT_LAUNCHER_TIMEOUT {
            a.duration("--timeout", self.timeout);
        }
        a.0
    }
}

/// `mpijob-agent guard -- COMMAND…`: a Kubeflow MPIJob's worker container
/// runs its own command (the image's sshd) under the agent, which passes
/// signals on, keeps the command's exit code, and turns an OOM kill of any
/// process in the container (an MPI rank, not sshd) into exit code 137, so
/// that Kubernetes reports the worker OOMKilled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardArgs {
    /// The container's own command and arguments; never empty.
    pub command: Vec<String>,
}

impl GuardArgs {
    /// The argv after the agent's path: `guard -- COMMAND…`. The command
    /// stays one argv entry per word, after `--`, whatever it holds.
    pub fn to_argv(&self) -> Vec<String> {
        let mut a = Argv::new(subcommand::GUARD);
        a.flag("--");
        a.0.extend(self.command.iter().cloned());
        a.0
    }
}

/// An argv under construction.
struct Argv(Vec<String>);

impl Argv {
    fn new(subcommand: &str) -> Self {
        Argv(vec![subcommand.to_string()])
    }
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.to_string());
    }
    /// `--flag VALUE`, for values that cannot start with `-`.
    fn value(&mut self, flag: &str, value: impl ToString) {
        self.0.push(flag.to_string());
        self.0.push(value.to_string());
    }
    fn path(&mut self, flag: &str, value: &std::path::Path) {
        self.joined(flag, &value.display().to_string());
    }
    /// `--flag=VALUE`: a value starting with `-` stays a value.
    fn joined(&mut self, flag: &str, value: &str) {
        self.0.push(format!("{flag}={value}"));
    }
    fn duration(&mut self, flag: &str, value: Duration) {
        self.value(flag, duration::format(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_write_only_what_the_agent_needs() {
        assert_eq!(
            WorkerArgs::default().to_argv(),
            [
                "worker",
                "--port",
                "2222",
                "--ssh-dir=/root/.ssh",
                "--sshd-path=/usr/sbin/sshd",
                "--finish-file=/etc/mpijob/podinfo/finished"
            ]
        );
        assert_eq!(ProbeArgs::default().to_argv(), ["probe", "--port", "2222"]);
        assert_eq!(
            WaitArgs::default().to_argv(),
            ["wait", "--port", "2222", "--hostfile=/etc/mpi/hostfile"]
        );
    }

    #[test]
    fn wait_writes_a_timeout_only_off_its_default() {
        let a = WaitArgs {
            hostfile: "-hosts".into(),
            port: 22,
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(
            a.to_argv(),
            [
                "wait",
                "--port",
                "22",
                "--hostfile=-hosts",
                "--timeout",
                "1500ms"
            ]
        );
    }

    #[test]
    fn launcher_values_that_look_like_flags_stay_values() {
        let a = LauncherArgs {
            mca: vec![LauncherArgs::mca_entry("btl", "^openib")],
            extra_mpi_args: vec!["-N".into(), "2".into()],
            cmd: vec!["--not-a-flag".into()],
            ..LauncherArgs::default()
        };
        let argv = a.to_argv();
        assert!(argv.contains(&"--mca=btl=^openib".to_string()));
        assert!(argv.contains(&"--extra-mpi-args=-N".to_string()));
        let dashdash = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(&argv[dashdash + 1..], ["--not-a-flag"]);
    }

    #[test]
    fn implementations_read_their_flag_values() {
        for i in MpiImplementation::ALL {
            assert_eq!(i.flag_value().parse(), Ok(i));
        }
        assert!("lam".parse::<MpiImplementation>().is_err());
    }
}
