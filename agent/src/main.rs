//! `mpijob-agent`: parses arguments (`cli`) and dispatches to a role.

mod banner;
mod cli;
mod client;
mod errors;
mod files;
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
mod supervise;
mod user;
mod worker;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Role};
use mpijob_api::contract;

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log_format);
    let result = match cli.command {
        Role::Worker(a) => worker::run(worker_options(a.into())),
        Role::Launcher(a) => launcher::run(launcher_options(a.into())),
        Role::Local(a) => local::run(local::Options {
            manifest: a.file,
            workers: a.workers,
            keep: a.keep,
            timeout: a.timeout,
        }),
        Role::Probe(a) => {
            let a = contract::ProbeArgs::from(a);
            probe::banner(a.host, a.port, a.timeout).map(|banner| {
                println!("{banner}");
                0
            })
        }
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

/// The worker's options: the contract's arguments with the agent's own
/// defaults filled in.
fn worker_options(a: contract::WorkerArgs) -> worker::Options {
    worker::Options {
        ssh_dir: a.ssh_dir,
        sshd_path: a.sshd_path,
        port: a.port,
        listen: a.listen,
        state_dir: a.state_dir,
        peers: a.peers,
        grace_period: a.grace_period,
        finish_file: a.finish_file,
        sshd_options: a.sshd_options,
        oom_watch: a.oom_watch,
    }
}

fn launcher_options(a: contract::LauncherArgs) -> launcher::Options {
    launcher::Options {
        hosts: a.hosts,
        job: a.job,
        namespace: a.namespace,
        workers: a.workers,
        slots: a.slots,
        port: a.port,
        ssh_dir: a.ssh_dir,
        state_dir: a.state_dir,
        mpi_home: a.mpi_home,
        implementation: a.mpi_implementation,
        mca: a.mca,
        extra_args: a.extra_mpi_args,
        timeout: a.timeout,
        grace_period: a.grace_period,
        termination_log: a.termination_log,
        cmd: a.cmd,
    }
}
