//! `mpijob-agent`: parses arguments and dispatches to a role. Every flag
//! also reads the environment variable named in the pod contract.

mod client;
mod hostfile;
mod hosts;
mod init;
mod install;
mod keys;
mod launcher;
mod local;
mod log;
mod mpirun;
mod oom;
mod probe;
mod sshd;
mod user;
mod worker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mpijob_api::contract::{self, env};

#[derive(Debug, Parser)]
#[command(
    name = "mpijob-agent",
    version,
    about = "The agent of mpijob's MPI containers and hosts"
)]
struct Cli {
    /// Log format: `text` for people, `json` for a cluster's log collector.
    #[arg(long, global = true, env = env::LOG_FORMAT, value_enum, default_value = "text")]
    log_format: log::Format,

    #[command(subcommand)]
    command: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run sshd with the job's keys, as the container's PID 1.
    Worker(WorkerArgs),
    /// Wait for every worker's DNS name and ssh banner, then run mpirun over
    /// them as the container's PID 1.
    ///
    /// Example: mpijob-agent launcher --hosts h1,h2 --slots 2 -- ./hello
    Launcher(LauncherArgs),
    /// Run an MPIJob manifest on this machine, with no cluster: one host
    /// per worker (network namespaces as root, loopback addresses
    /// otherwise), the job's command from this machine's files.
    ///
    /// Example: mpijob-agent local -f examples/pi/pi.yaml --workers 2
    Local(LocalArgs),
    /// Exit 0 only when an SSH server answers with its banner (a readiness
    /// probe).
    Probe(ProbeArgs),
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
struct WorkerArgs {
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
    /// with `ms`, `s` or `m`.
    #[arg(long, env = env::GRACE_PERIOD, default_value = "10s", value_parser = mpijob_api::duration::parse)]
    grace_period: Duration,

    /// When this file exists and is not empty, the job is over: stop sshd
    /// and exit 0 [default: /etc/mpijob/podinfo/finished, the downward API
    /// file of the finish annotation].
    #[arg(long, env = env::FINISH_FILE)]
    finish_file: Option<PathBuf>,

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

#[derive(Debug, Args)]
struct LauncherArgs {
    /// The worker hosts, separated by commas; or use --job, --namespace and
    /// --workers.
    #[arg(long, env = env::HOSTS, value_delimiter = ',')]
    hosts: Vec<String>,

    /// The MPIJob's name: the workers are <job>-worker-<i>.<job>.<ns>.svc.
    #[arg(long, env = env::JOB)]
    job: Option<String>,

    /// The MPIJob's namespace.
    #[arg(long, env = env::NAMESPACE)]
    namespace: Option<String>,

    /// How many workers the job has.
    #[arg(long, env = env::WORKERS)]
    workers: Option<u32>,

    /// Slots (ranks) per worker.
    #[arg(long, env = env::SLOTS, default_value_t = 1)]
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
    #[arg(long = "mpi-implementation", env = env::MPI_IMPLEMENTATION, value_enum)]
    mpi_implementation: Option<mpirun::Implementation>,

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
    /// or m.
    #[arg(long, env = env::TIMEOUT, default_value = "10m", value_parser = mpijob_api::duration::parse)]
    timeout: Duration,

    /// How long mpirun gets after SIGTERM before SIGKILL.
    #[arg(long, env = env::GRACE_PERIOD, default_value = "10s", value_parser = mpijob_api::duration::parse)]
    grace_period: Duration,

    /// Where the one-line summary goes (written only if it exists when
    /// under /dev).
    #[arg(long, env = env::TERMINATION_LOG, default_value = contract::TERMINATION_LOG)]
    termination_log: PathBuf,

    /// The MPI program and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    cmd: Vec<String>,
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
struct LocalArgs {
    /// The MPIJob manifest (YAML or JSON).
    #[arg(short = 'f', long = "file", value_name = "MANIFEST")]
    file: PathBuf,

    /// How many workers [default: the manifest's spec.worker.replicas].
    #[arg(long)]
    workers: Option<u32>,

    /// Keep the run's directory (key, logs, hostfile) and, as root, its
    /// network namespaces and bridge, and say how to remove them.
    #[arg(long)]
    keep: bool,

    /// How long the launcher waits for the workers: seconds, or a number
    /// with ms, s or m.
    #[arg(long, default_value = "60s", value_parser = mpijob_api::duration::parse)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The port to probe.
    #[arg(long, env = env::PORT, default_value_t = contract::DEFAULT_SSH_PORT)]
    port: u16,

    /// The address to probe.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// How long to wait for the banner.
    #[arg(long, default_value = "2s", value_parser = mpijob_api::duration::parse)]
    timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log_format);
    let result = match cli.command {
        Role::Worker(a) => worker::run(worker::Options {
            ssh_dir: a.ssh_dir,
            sshd_path: a.sshd_path,
            port: a.port,
            listen: a.listen,
            state_dir: a.state_dir,
            peers: a.peers.into_iter().filter(|p| !p.is_empty()).collect(),
            grace_period: a.grace_period,
            finish_file: a.finish_file.unwrap_or_else(|| {
                PathBuf::from(contract::PODINFO_MOUNT_PATH).join(contract::FINISH_FILE_NAME)
            }),
            sshd_options: a
                .sshd_options
                .into_iter()
                .filter(|o| !o.trim().is_empty())
                .collect(),
            oom_watch: !a.no_oom_watch,
        }),
        Role::Launcher(a) => launcher::run(launcher::Options {
            hosts: a.hosts.into_iter().filter(|h| !h.is_empty()).collect(),
            job: a.job,
            namespace: a.namespace,
            workers: a.workers,
            slots: a.slots,
            port: a.port,
            ssh_dir: a.ssh_dir,
            state_dir: a.state_dir,
            mpi_home: a.mpi_home,
            implementation: a.mpi_implementation,
            mca: or_env_lines(a.mca, env::MCA),
            extra_args: or_env_lines(a.extra_mpi_args, env::EXTRA_MPI_ARGS),
            timeout: a.timeout,
            grace_period: a.grace_period,
            termination_log: a.termination_log,
            cmd: a.cmd,
        }),
        Role::Local(a) => local::run(local::Options {
            manifest: a.file,
            workers: a.workers,
            keep: a.keep,
            timeout: a.timeout,
        }),
        Role::Probe(a) => probe::banner(a.host, a.port, a.timeout).map(|banner| {
            println!("{banner}");
            0
        }),
        Role::Install { dir } => install::run(&dir).map(|dest| {
            println!("installed {}", dest.display());
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            tracing::error!("{line}");
            log::termination_message(&line);
            ExitCode::from(1)
        }
    }
}

/// An I/O error's reason in words, without Rust's "(os error N)".
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn io_reasons_read_as_words() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(io_reason(&e), "permission denied");
    }
}
