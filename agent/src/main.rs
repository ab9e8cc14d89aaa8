//! `mpijob-agent`: parses arguments (`cli`) and dispatches to a role.

mod banner;
mod cli;
mod client;
mod errors;
mod files;
mod guard;
mod hostfile;
mod hosts;
mod init;
mod install;
mod keygen;
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
mod wait;
mod worker;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Role};
use mpijob_api::contract;

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log_format);
    let result = match cli.command {
        Role::Worker(a) => worker::run(a.into()),
        Role::Launcher(a) => launcher::run(a.into()),
        Role::Wait(a) => wait::run(a.into()),
        Role::Guard(a) => {
            let oom_watch = !a.no_oom_watch;
            guard::run(a.into(), oom_watch)
        }
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
        Role::Keygen(a) => keygen::run(a.into()),
        Role::Install { dir } => install::run(&dir).map(|dest| {
            println!("installed {}", dest.display());
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            let exit = errors::Exit::error(e);
            tracing::error!("{}", exit.line);
            log::termination_message(&exit.line);
            ExitCode::from(u8::try_from(exit.code).unwrap_or(1))
        }
    }
}
