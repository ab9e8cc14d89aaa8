//! `mpijob-agent`: parses arguments (`cli`) and dispatches to a role.

mod banner;
mod cli;
mod client;
mod dns;
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
#[cfg(feature = "local")]
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
    if let Err(line) = version_as_expected(
        std::env::var(contract::env::EXPECT_AGENT_VERSION)
            .ok()
            .as_deref(),
        contract::VERSION,
    ) {
        tracing::error!("{line}");
        log::termination_message(&line);
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Role::Worker(a) => worker::run(a.into()),
        Role::Launcher(a) => launcher::run(a.into()),
        Role::Wait(a) => wait::run(a.into()),
        Role::Guard(a) => {
            let oom_watch = !a.no_oom_watch;
            guard::run(a.into(), oom_watch)
        }
        #[cfg(feature = "local")]
        Role::Local(a) => match a.file {
            _ if a.clean => local::clean(),
            Some(manifest) => local::run(local::Options {
                manifest,
                workers: a.workers,
                keep: a.keep,
                timeout: a.timeout,
            }),
            None => unreachable!("clap requires --file unless --clean"),
        },
        #[cfg(not(feature = "local"))]
        Role::Local(_) => Err(anyhow::anyhow!(
            "local mode is not in this build of mpijob-agent (the lean one for images, built without the `local` feature): run it with the full agent, from the mpijob-agent .deb or `cargo install --path agent`"
        )),
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

/// An agent baked into an image must be the release the controller
/// expects (`MPIJOB_EXPECT_AGENT_VERSION`, set for jobs annotated
/// `batch.tensorstack.dev/agent-in-image`): the pod contract, its flags and
/// files, is a release's.
fn version_as_expected(expected: Option<&str>, mine: &str) -> Result<(), String> {
    match expected {
        None => Ok(()),
        Some(want) if want == mine => Ok(()),
        Some(want) => Err(format!(
            "this image's mpijob-agent is {mine}, but the controller expects {want} ({}): put agent {want} into the image (COPY --from=mpijob/agent:{want} /mpijob-agent {}), or remove the annotation {} from the MPIJob to have the agent copied in",
            contract::env::EXPECT_AGENT_VERSION,
            contract::agent_path(),
            contract::AGENT_IN_IMAGE_ANNOTATION
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baked_agent_of_another_release_refuses_to_run() {
        assert_eq!(version_as_expected(None, "0.1.0"), Ok(()));
        assert_eq!(version_as_expected(Some("0.1.0"), "0.1.0"), Ok(()));
        let err = version_as_expected(Some("0.2.0"), "0.1.0").unwrap_err();
        assert!(
            err.starts_with("this image's mpijob-agent is 0.1.0, but the controller expects 0.2.0 (MPIJOB_EXPECT_AGENT_VERSION): put agent 0.2.0 into the image (COPY --from=mpijob/agent:0.2.0 /mpijob-agent /opt/mpijob/mpijob-agent)"),
            "{err}"
        );
    }
}
