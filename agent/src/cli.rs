//! The agent's command line: clap definitions whose values become the pod
//! contract's typed arguments ([`contract::WorkerArgs`],
//! [`contract::LauncherArgs`], [`contract::WaitArgs`],
//! [`contract::ProbeArgs`]). Every flag also
//! reads the environment variable named in the contract, and its default
//! is the contract's.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use mpijob_api::contract::{self, env, MpiImplementation};

use crate::log;

#[derive(Debug, Parser)]
#[command(
    name = "mpijob-agent",
    version,
    about = "The agent of mpijob's MPI containers and hosts"
)]
pub struct Cli {
    /// Log format: `text` for people, `json` for a cluster's log collector.
    #[arg(long, global = true, env = env::LOG_FORMAT, value_enum, default_value = "text")]
    pub log_format: log::Format,

    #[command(subcommand)]
    pub command: Role,
}

#[derive(Debug, Subcommand)]
pub enum Role {
    /// Run sshd with the job's keys, as the container's PID 1.
    Worker(WorkerCli),
    /// Wait for every worker's DNS name and ssh banner, then run mpirun over
    /// them as the container's PID 1.
    ///
    /// Examples:
    ///   mpijob-agent launcher --hosts h1,h2 --slots 2 -- ./hello
    ///   mpijob-agent launcher --hostfile hosts --ssh-dir ./keys -- ./hello
    Launcher(LauncherCli),
    /// Wait until every other host in an MPI hostfile resolves in DNS and
    /// answers with an ssh banner, then exit 0: the init container of a
    /// Kubeflow MPIJob's launcher.
    ///
    /// The launcher container then runs the user's own mpirun, with every
    /// worker up. The hostfile may use Open MPI's `host slots=N` or
    /// MPICH's and Intel MPI's `host:N`. The host that is this machine (its
    /// first DNS label equals the hostname: the launcher, listed first
    /// under runLauncherAsWorker) is skipped, since its sshd starts only
    /// after this wait. Progress is logged as the launcher logs it. Exit
    /// codes: 0 when all answer, 1 at the timeout (every missing host
    /// named), 2 for a bad hostfile, 128+signal when stopped.
    ///
    /// Example: /mpijob-agent wait --hostfile=/etc/mpi/hostfile --port 2222 --timeout 5m
    Wait(WaitCli),
    /// Run a container's own command as its main process, and turn an OOM
    /// kill of any process in the container into exit code 137: a Kubeflow
    /// MPIJob's worker, whose image runs its own sshd.
    ///
    /// An MPI rank runs as a child of an sshd session. When the kernel's
    /// OOM killer takes it, sshd lives on and Kubernetes sees nothing; the
    /// guard then stops the command and exits 137, so that the container
    /// ends OOMKilled. Otherwise it is transparent: the command keeps its
    /// output, receives every signal, and its exit code is the guard's.
    ///
    /// Example: /opt/mpijob/mpijob-agent guard -- /usr/sbin/sshd -De
    Guard(GuardCli),
    /// Run an MPIJob manifest on this machine, with no cluster: one host
    /// per worker (network namespaces as root, loopback addresses
    /// otherwise), the job's command from this machine's files.
    ///
    /// Example: mpijob-agent local -f examples/pi/pi.yaml --workers 2
    Local(LocalArgs),
    /// Exit 0 only when an SSH server answers with its banner (a readiness
    /// probe).
    Probe(ProbeCli),
    /// Make a job's ssh directory for bare-metal hosts: a new key pair,
    /// `authorized_keys`, `known_hosts` pinning the key as each host's host
    /// key on --port, and an ssh client `config` for the hosts.
    ///
    /// Copy the directory to the same path on every host, then run
    /// `mpijob-agent worker --ssh-dir DIR` on the workers and
    /// `mpijob-agent launcher --ssh-dir DIR …` on the launcher. Every file
    /// is 0600 in a 0700 directory; existing keys are kept unless --force.
    ///
    /// Example: mpijob-agent keygen --hosts h1,h2,h3 --out /etc/mpijob/job
    Keygen(KeygenCli),
    /// Copy this binary into DIR (the init container's job), so that the
    /// job's own image can run it from a shared volume.
    ///
    /// Example: /mpijob-agent install /opt/mpijob
    Install {
        /// The directory to copy `mpijob-agent` into.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct WorkerCli {
    /// Where the job's key pair is mounted (the job's sshAuthMountPath).
    #[arg(long, env = env::SSH_DIR, default_value = contract::DEFAULT_SSH_AUTH_MOUNT_PATH)]
    ssh_dir: PathBuf,

    /// The OpenSSH sshd to run.
    #[arg(long, env = env::SSHD_PATH, default_value = contract::DEFAULT_SSHD_PATH)]
    sshd_path: PathBuf,

    /// The port sshd listens on.
    #[arg(long, env = env::PORT, default_value_t = contract::DEFAULT_SSH_PORT)]
    port: u16,

    /// The address sshd listens on [default: all addresses].
    #[arg(long, env = env::LISTEN)]
    listen: Option<IpAddr>,

    /// A private directory for the agent's files [default: /run/mpijob as
    /// root, else $XDG_RUNTIME_DIR/mpijob or /tmp/mpijob-<uid>].
    #[arg(long, env = env::STATE_DIR)]
    state_dir: Option<PathBuf>,

    /// The job's hosts, as ssh host patterns separated by commas (e.g.
    /// `*.pi.ns.svc`): plain `ssh <peer>` then uses the job key and port,
    /// and checks the peer's host key against the job key.
    #[arg(long, env = env::PEERS, value_delimiter = ',')]
    peers: Vec<String>,

    /// How long sshd gets after SIGTERM before SIGKILL: seconds, or a number
    /// with `ms`, `s` or `m` [default: 10s].
    #[arg(long, env = env::GRACE_PERIOD, value_parser = mpijob_api::duration::parse)]
    grace_period: Option<Duration>,

    /// When this file exists and is not empty, the job is over: stop sshd
    /// and exit 0 [default: /etc/mpijob/podinfo/finished, the downward API
    /// file of the finish annotation].
    #[arg(long, env = env::FINISH_FILE, hide_default_value = true, default_value = contract::FINISH_FILE_PATH)]
    finish_file: PathBuf,

    /// An extra sshd_config line, like `MaxStartups 100:30:200`; repeat the
    /// flag, or put one per line in the environment variable.
    #[arg(long = "sshd-option", env = env::SSHD_OPTIONS, value_delimiter = '\n')]
    sshd_options: Vec<String>,

    /// Keep running when the kernel's OOM killer kills a process in the
    /// agent's memory cgroup.
    ///
    /// By default the agent then stops sshd and exits 137, so that
    /// Kubernetes reports the worker as OOMKilled. The variable takes
    /// true/false, 1/0, yes/no or on/off.
    #[arg(long, env = env::NO_OOM_WATCH, value_parser = clap::builder::BoolishValueParser::new())]
    no_oom_watch: bool,
}

impl From<WorkerCli> for contract::WorkerArgs {
    fn from(a: WorkerCli) -> Self {
        contract::WorkerArgs {
            ssh_dir: a.ssh_dir,
            sshd_path: a.sshd_path,
            port: a.port,
            listen: a.listen,
            state_dir: a.state_dir,
            peers: a.peers.into_iter().filter(|p| !p.is_empty()).collect(),
            grace_period: a.grace_period.unwrap_or(contract::DEFAULT_GRACE_PERIOD),
            finish_file: a.finish_file,
            sshd_options: a
                .sshd_options
                .into_iter()
                .filter(|o| !o.trim().is_empty())
                .collect(),
            oom_watch: !a.no_oom_watch,
        }
    }
}

#[derive(Debug, Args)]
pub struct LauncherCli {
    /// The worker hosts, separated by commas; or use --job, --namespace and
    /// --workers, or --hostfile.
    #[arg(long, env = env::HOSTS, value_delimiter = ',')]
    hosts: Vec<String>,

    /// Take the workers and their slots from an MPI hostfile: Open MPI's
    /// `host slots=N` lines or MPICH's `host:N` (comments and other
    /// options are passed over). A host without a count gets --slots; a
    /// host listed twice gets the sum. The launcher writes its own hostfile
    /// for the MPI it runs, so either syntax works with either MPI.
    #[arg(long, env = env::HOSTFILE, value_name = "FILE")]
    hostfile: Option<PathBuf>,

    /// The MPIJob's name: the workers are <job>-worker-<i>.<job>.<ns>.svc.
    #[arg(long, env = env::JOB)]
    job: Option<String>,

    /// The MPIJob's namespace.
    #[arg(long, env = env::NAMESPACE)]
    namespace: Option<String>,

    /// How many workers the job has.
    #[arg(long, env = env::WORKERS)]
    workers: Option<u32>,

    /// Slots (ranks) per worker (with --hostfile: per host that gives no
    /// count).
    #[arg(long, env = env::SLOTS, default_value_t = contract::DEFAULT_SLOTS)]
    slots: u32,

    /// The workers' ssh port.
    #[arg(long, env = env::PORT, default_value_t = contract::DEFAULT_SSH_PORT)]
    port: u16,

    /// Where the job's key pair is mounted (the job's sshAuthMountPath).
    #[arg(long, env = env::SSH_DIR, default_value = contract::DEFAULT_SSH_AUTH_MOUNT_PATH)]
    ssh_dir: PathBuf,

    /// A private directory for the hostfile and the ssh client files
    /// [default: /run/mpijob/launcher as root, else under $XDG_RUNTIME_DIR
    /// or /tmp/mpijob-<uid>].
    #[arg(long, env = env::STATE_DIR)]
    state_dir: Option<PathBuf>,

    /// The MPI installation: mpirun is DIR/bin/mpirun [default: mpirun on
    /// PATH].
    #[arg(long, env = env::MPI_HOME)]
    mpi_home: Option<PathBuf>,

    /// The MPI implementation [default: detected from `mpirun --version`].
    #[arg(
        long = "mpi-implementation",
        env = env::MPI_IMPLEMENTATION,
        value_parser = implementation_parser()
    )]
    mpi_implementation: Option<MpiImplementation>,

    /// An MCA parameter as KEY=VALUE (Open MPI only); repeat the flag. The
    /// variable takes one per line.
    #[arg(long = "mca", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    mca: Vec<String>,

    /// An extra mpirun argument, e.g. --extra-mpi-args=-N; repeat the flag.
    /// The variable takes one per line.
    #[arg(
        long = "extra-mpi-args",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    extra_mpi_args: Vec<String>,

    /// How long to wait for the workers: seconds, or a number with ms, s
    /// or m [default: 10m].
    #[arg(long, env = env::TIMEOUT, value_parser = mpijob_api::duration::parse)]
    timeout: Option<Duration>,

    /// How long mpirun gets after SIGTERM before SIGKILL [default: 10s].
    #[arg(long, env = env::GRACE_PERIOD, value_parser = mpijob_api::duration::parse)]
    grace_period: Option<Duration>,

    /// Where the one-line summary goes (written only if it exists when
    /// under /dev).
    #[arg(long, env = env::TERMINATION_LOG, default_value = contract::TERMINATION_LOG)]
    termination_log: PathBuf,

    /// Debug mode (the T9k API's runMode.debug): wait for the workers,
    /// write the hostfile and the ssh client files, print the mpirun
    /// command, and stay up until stopped instead of running it. Run the
    /// printed command by hand, e.g. through `kubectl exec`.
    #[arg(long)]
    hold: bool,

    /// CMD is a Kubeflow MPIJob launcher's own command (`mpirun -n 2 …`):
    /// run it unchanged, with mpi-operator's variables for
    /// --mpi-implementation (needed) and the agent's ssh set-up, instead
    /// of building mpirun's argv. Local mode runs Kubeflow manifests so.
    #[arg(long, conflicts_with_all = ["hold", "mca", "extra_mpi_args"])]
    kubeflow: bool,

    /// The MPI program and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
}

fn implementation_parser() -> impl TypedValueParser<Value = MpiImplementation> {
    PossibleValuesParser::new(MpiImplementation::ALL.map(MpiImplementation::flag_value))
        .map(|s| s.parse().expect("one of the possible values"))
}

impl From<LauncherCli> for contract::LauncherArgs {
    fn from(a: LauncherCli) -> Self {
        contract::LauncherArgs {
            hosts: a.hosts.into_iter().filter(|h| !h.is_empty()).collect(),
            hostfile: a.hostfile,
            job: a.job,
            namespace: a.namespace,
            workers: a.workers,
            slots: a.slots,
            port: a.port,
            ssh_dir: a.ssh_dir,
            state_dir: a.state_dir,
            mpi_home: a.mpi_home,
            mpi_implementation: a.mpi_implementation,
            mca: or_env_lines(a.mca, env::MCA),
            extra_mpi_args: or_env_lines(a.extra_mpi_args, env::EXTRA_MPI_ARGS),
            timeout: a.timeout.unwrap_or(contract::DEFAULT_LAUNCHER_TIMEOUT),
            grace_period: a.grace_period.unwrap_or(contract::DEFAULT_GRACE_PERIOD),
            termination_log: a.termination_log,
            hold: a.hold,
            kubeflow: a.kubeflow,
            cmd: a.cmd,
        }
    }
}

/// A flag's values, or else the variable's lines. Not a clap delimiter:
/// a line break inside a flag's value must reach the checks, not split it.
fn or_env_lines(values: Vec<String>, var: &str) -> Vec<String> {
    if !values.is_empty() {
        return values;
    }
    std::env::var(var)
        .map(|v| {
            v.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Args)]
pub struct WaitCli {
    /// The MPI hostfile listing the hosts to wait for (Open MPI
    /// `host slots=N` or Hydra `host:N` lines): by default the Kubeflow
    /// MPIJob's ConfigMap.
    #[arg(long, env = env::HOSTFILE, default_value = contract::DEFAULT_KUBEFLOW_HOSTFILE)]
    hostfile: PathBuf,

    /// The hosts' ssh port.
    #[arg(long, env = env::PORT, default_value_t = contract::DEFAULT_SSH_PORT)]
    port: u16,

    /// How long to wait for the hosts: seconds, or a number with ms, s or
    /// m [default: 10m].
    #[arg(long, env = env::TIMEOUT, value_parser = mpijob_api::duration::parse)]
    timeout: Option<Duration>,
}

impl From<WaitCli> for contract::WaitArgs {
    fn from(a: WaitCli) -> Self {
        contract::WaitArgs {
            hostfile: a.hostfile,
            port: a.port,
            timeout: a.timeout.unwrap_or(contract::DEFAULT_LAUNCHER_TIMEOUT),
        }
    }
}

#[derive(Debug, Args)]
pub struct GuardCli {
    /// Only run the command: no OOM watch. The variable takes true/false,
    /// 1/0, yes/no or on/off.
    #[arg(long, env = env::NO_OOM_WATCH, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_oom_watch: bool,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl From<GuardCli> for contract::GuardArgs {
    fn from(a: GuardCli) -> Self {
        contract::GuardArgs { command: a.command }
    }
}

#[derive(Debug, Args)]
pub struct KeygenCli {
    /// The job's hosts (the workers; and the launcher, if ssh should reach
    /// it too), separated by commas.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,

    /// Take the hosts from an MPI hostfile (Open MPI `host slots=N` or
    /// MPICH `host:N` lines) instead of --hosts.
    #[arg(long, value_name = "FILE")]
    hostfile: Option<PathBuf>,

    /// The port the workers' sshd listens on (the workers' and the
    /// launcher's --port).
    #[arg(long, default_value_t = contract::DEFAULT_SSH_PORT)]
    port: u16,

    /// The directory to write; made 0700 if new. Its absolute path is
    /// written into `config`: copy it to the same path on every host.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Replace a key pair and files already in DIR.
    #[arg(long)]
    force: bool,
}

impl From<KeygenCli> for crate::keygen::Options {
    fn from(a: KeygenCli) -> Self {
        crate::keygen::Options {
            hosts: a.hosts.into_iter().filter(|h| !h.is_empty()).collect(),
            hostfile: a.hostfile,
            port: a.port,
            out: a.out,
            force: a.force,
        }
    }
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The MPIJob manifest (YAML or JSON): batch.tensorstack.dev/v1beta1
    /// or kubeflow.org/v2beta1.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "MANIFEST",
        required_unless_present = "clean"
    )]
    pub file: Option<PathBuf>,

    /// Remove what earlier runs left, and run nothing: the hosts of --keep
    /// runs, and of runs that were killed outright (SIGKILL) and could not
    /// tear down. Runs that are going are left alone. (Each run removes
    /// what killed runs left before it starts.)
    #[arg(long, conflicts_with_all = ["file", "workers", "keep"])]
    pub clean: bool,

    /// How many workers [default: the manifest's spec.worker.replicas].
    #[arg(long)]
    pub workers: Option<u32>,

    /// Keep the run's directory (key, logs, hostfile) and, as root, its
    /// network namespaces and bridge, and say how to remove them.
    #[arg(long)]
    pub keep: bool,

    /// How long the launcher waits for the workers: seconds, or a number
    /// with ms, s or m.
    #[arg(long, default_value = "60s", value_parser = mpijob_api::duration::parse)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ProbeCli {
    /// The port to probe.
    #[arg(long, env = env::PORT, default_value_t = contract::DEFAULT_SSH_PORT)]
    port: u16,

    /// The address to probe.
    #[arg(long, default_value_t = contract::DEFAULT_PROBE_HOST)]
    host: IpAddr,

    /// How long to wait for the banner [default: 2s].
    #[arg(long, value_parser = mpijob_api::duration::parse)]
    timeout: Option<Duration>,
}

impl From<ProbeCli> for contract::ProbeArgs {
    fn from(a: ProbeCli) -> Self {
        contract::ProbeArgs {
            port: a.port,
            host: a.host,
            timeout: a.timeout.unwrap_or(contract::DEFAULT_PROBE_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::net::Ipv4Addr;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The contract's argv, parsed by the agent's own clap definitions.
    fn parse(argv: Vec<String>) -> Role {
        for var in [
            env::MCA,
            env::EXTRA_MPI_ARGS,
            env::PEERS,
            env::SSHD_OPTIONS,
            env::HOSTFILE,
            env::PORT,
            env::TIMEOUT,
        ] {
            assert!(std::env::var_os(var).is_none(), "{var} is set");
        }
        let full = std::iter::once("mpijob-agent".to_string()).chain(argv.clone());
        match Cli::try_parse_from(full) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{argv:?} does not parse: {e}"),
        }
    }

    fn worker_round_trip(want: contract::WorkerArgs) {
        match parse(want.to_argv()) {
            Role::Worker(w) => assert_eq!(contract::WorkerArgs::from(w), want),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn launcher_round_trip(want: contract::LauncherArgs) {
        match parse(want.to_argv()) {
            Role::Launcher(l) => assert_eq!(contract::LauncherArgs::from(l), want),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn worker_args_round_trip_every_flag() {
        worker_round_trip(contract::WorkerArgs::default());
        // Every field away from its default.
        worker_round_trip(contract::WorkerArgs {
            ssh_dir: "/home/mpiuser/.ssh".into(),
            sshd_path: "/opt/openssh/sbin/sshd".into(),
            port: 2022,
            listen: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10))),
            state_dir: Some("/run/state dir".into()),
            peers: vec![
                "*.pi.ns.svc".into(),
                "pi-worker-*".into(),
                "pi-launcher".into(),
            ],
            grace_period: Duration::from_millis(1500),
            finish_file: "/tmp/-finished".into(),
            sshd_options: vec!["MaxStartups 100:30:200".into(), "-LogLevel DEBUG".into()],
            oom_watch: false,
        });
    }

    #[test]
    fn launcher_args_round_trip_every_flag() {
        launcher_round_trip(contract::LauncherArgs::default());
        for implementation in MpiImplementation::ALL {
            launcher_round_trip(contract::LauncherArgs {
                hosts: vec!["h1".into(), "h2.example".into()],
                hostfile: Some("-/etc/hosts file".into()),
                job: Some("pi".into()),
                namespace: Some("team-a".into()),
                workers: Some(3),
                slots: 4,
                port: 2022,
                ssh_dir: "/home/mpiuser/.ssh".into(),
                state_dir: Some("/run/l".into()),
                mpi_home: Some("/opt/openmpi".into()),
                mpi_implementation: Some(implementation),
                mca: vec![
                    contract::LauncherArgs::mca_entry("btl", "^openib"),
                    contract::LauncherArgs::mca_entry("pml", "-ob1=x"),
                ],
                extra_mpi_args: vec!["-N".into(), "2".into(), "--bind-to=none".into()],
                timeout: Duration::from_secs(90),
                grace_period: Duration::from_millis(250),
                termination_log: "/tmp/termination".into(),
                hold: true,
                kubeflow: false,
                cmd: vec!["--help".into(), "-x".into(), "a b".into()],
            });
        }
        // --kubeflow goes without --hold, --mca and --extra-mpi-args.
        launcher_round_trip(contract::LauncherArgs {
            hosts: vec![
                "pi-launcher.pi.ns.svc".into(),
                "pi-worker-0.pi.ns.svc".into(),
            ],
            slots: 2,
            mpi_implementation: Some(MpiImplementation::Intel),
            kubeflow: true,
            cmd: vec!["mpirun".into(), "-n".into(), "4".into(), "./pi".into()],
            ..contract::LauncherArgs::default()
        });
    }

    #[test]
    fn guard_args_round_trip_any_command() {
        for command in [
            vec!["/usr/sbin/sshd".to_string(), "-De".into()],
            vec![
                "sh".into(),
                "-c".into(),
                "echo; rm -rf /".into(),
                "--".into(),
                "--help".into(),
            ],
        ] {
            let want = contract::GuardArgs { command };
            let argv = contract::agent_guard_command(&want);
            match Cli::try_parse_from(&argv).unwrap().command {
                Role::Guard(g) => {
                    assert!(!g.no_oom_watch);
                    assert_eq!(contract::GuardArgs::from(g), want);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn wait_args_round_trip_every_flag() {
        for want in [
            contract::WaitArgs::default(),
            // Every field away from its default.
            contract::WaitArgs {
                hostfile: "/etc/mpi dir/-hostfile".into(),
                port: 22,
                timeout: Duration::from_millis(1500),
            },
        ] {
            match parse(want.to_argv()) {
                Role::Wait(w) => assert_eq!(contract::WaitArgs::from(w), want),
                other => panic!("parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn probe_args_round_trip_every_flag() {
        for want in [
            contract::ProbeArgs::default(),
            contract::ProbeArgs {
                port: 22,
                host: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
                timeout: Duration::from_millis(500),
            },
        ] {
            match parse(want.to_argv()) {
                Role::Probe(p) => assert_eq!(contract::ProbeArgs::from(p), want),
                other => panic!("parsed as {other:?}"),
            }
        }
    }
}
