//! `mpijob-agent wait`: the init container of a Kubeflow MPIJob's launcher.
//!
//! Kubeflow's launcher runs the user's own mpirun, which fails when a worker
//! is not up yet. This runs first, from the agent image, and exits 0 once
//! every host of the job's hostfile resolves in DNS and answers with an ssh
//! banner: the launcher's own wait ([`hosts::wait`]), with the same
//! progress lines.
//!
//! With `runLauncherAsWorker`, the launcher is the hostfile's first host.
//! Its sshd cannot start before this init container ends, so the entry
//! whose first DNS label is this machine's hostname is left out.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use mpijob_api::contract;
use tracing::{error, info, warn};

use crate::errors::{io_reason, Exit};
use crate::hostfile::{self, HostEntry};
use crate::hosts::{self, Outcome};
use crate::init::Init;
use crate::log;

/// The wait's settings: the pod contract's arguments (see cli.rs).
pub type Options = contract::WaitArgs;

/// Wait; returns the exit code. Errors are reported here (log and
/// termination message), so the caller only exits.
pub fn run(opts: Options) -> Result<i32> {
    // Signals are read from a signalfd: as an init container's PID 1, the
    // agent would otherwise never see SIGTERM.
    let mut init = Init::new()?;
    match wait(&mut init, &opts) {
        Ok(()) => Ok(0),
        Err(exit) => {
            if exit.signal.is_some() {
                info!("{}", exit.line);
            } else {
                error!("{}", exit.line);
            }
            log::termination_message(&format!("wait: {}", exit.line));
            Ok(exit.code)
        }
    }
}

fn wait(init: &mut Init, opts: &Options) -> Result<(), Exit> {
    if opts.port == 0 {
        return Err(Exit::bad_input(
            "--port 0: give the workers' ssh port, e.g. 2222",
        ));
    }
    let file = opts.hostfile.display();
    let entries = read(&opts.hostfile)?;
    let me = this_host();
    let plan = plan(&entries, me.as_deref());
    for host in &plan.skipped {
        info!(
            "skipping {host}: it is this host ({}), whose sshd starts only after this wait",
            me.as_deref().unwrap_or_default()
        );
    }
    if plan.hosts.is_empty() {
        info!("no other host in {file} to wait for");
        return Ok(());
    }
    info!(
        workers = plan.hosts.len(),
        port = opts.port,
        timeout = %mpijob_api::duration::format(opts.timeout),
        hostfile = %file,
        "waiting for the hostfile's workers"
    );
    let started = Instant::now();
    match hosts::wait_blocking(init, &plan.hosts, opts.port, opts.timeout)? {
        Outcome::AllUp(..) => {
            info!(
                "all {} workers in {file} answer on port {} after {:.1?}",
                plan.hosts.len(),
                opts.port,
                started.elapsed()
            );
            Ok(())
        }
        Outcome::TimedOut(status) => Err(Exit::failed(hosts::timeout_message(
            opts.timeout,
            opts.port,
            &plan.hosts,
            &status,
            hosts::Server::Sshd,
        ))),
        Outcome::Stopped(sig) => Err(hosts::stopped(sig)),
    }
}

/// The hostfile's entries; a file that cannot be read or parsed is bad
/// input, named.
fn read(path: &Path) -> Result<Vec<HostEntry>, Exit> {
    let text = fs::read_to_string(path).map_err(|e| {
        Exit::bad_input(format!(
            "{}: cannot read the hostfile: {}; mount the job's hostfile there (a Kubeflow \
             MPIJob's ConfigMap, at /etc/mpi), or pass --hostfile FILE",
            path.display(),
            io_reason(&e)
        ))
    })?;
    hostfile::parse(&text).map_err(|e| Exit::bad_input(format!("{}: {e}", path.display())))
}

/// This machine's hostname, if it has a readable one.
fn this_host() -> Option<String> {
    match nix::unistd::gethostname().map(|h| h.into_string()) {
        Ok(Ok(name)) if !name.is_empty() => Some(name),
        Ok(_) => None,
        Err(e) => {
            warn!("cannot read this machine's hostname ({e}); waiting for every host");
            None
        }
    }
}

/// Which hosts to wait for.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Each other host once, in hostfile order.
    pub hosts: Vec<String>,
    /// The hosts that are this one.
    pub skipped: Vec<String>,
}

/// Each host of `entries` once (MPI may list a host twice; it answers
/// once), without those whose first DNS label is `hostname`'s.
pub fn plan(entries: &[HostEntry], hostname: Option<&str>) -> Plan {
    let me = hostname.map(hosts::label);
    let mut plan = Plan {
        hosts: Vec::new(),
        skipped: Vec::new(),
    };
    for e in entries {
        let is_me = me.is_some_and(|me| hosts::label(&e.host).eq_ignore_ascii_case(me));
        let list = if is_me {
            &mut plan.skipped
        } else {
            &mut plan.hosts
        };
        if !list.contains(&e.host) {
            list.push(e.host.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(hosts: &[&str]) -> Vec<HostEntry> {
        hosts
            .iter()
            .map(|h| HostEntry {
                host: h.to_string(),
                slots: Some(1),
            })
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_launcher_itself_is_skipped() {
        let e = entries(&[
            "pi-launcher.pi.team.svc",
            "pi-worker-0.pi.team.svc",
            "pi-worker-1.pi.team.svc",
        ]);
        assert_eq!(
            plan(&e, Some("pi-launcher")),
            Plan {
                hosts: strings(&["pi-worker-0.pi.team.svc", "pi-worker-1.pi.team.svc"]),
                skipped: strings(&["pi-launcher.pi.team.svc"]),
            }
        );
        // A hostname with a domain, in another case, is still this host.
        assert_eq!(
            plan(&e, Some("PI-Launcher.pi.team.svc.cluster.local")).skipped,
            strings(&["pi-launcher.pi.team.svc"])
        );
    }

    #[test]
    fn only_a_whole_first_label_matches() {
        let e = entries(&["pi-launcher-2.pi.team.svc", "pi.team.svc", "127.0.0.1"]);
        let p = plan(&e, Some("pi-launcher"));
        assert_eq!(p.hosts.len(), 3);
        assert!(p.skipped.is_empty());
        // An address is never this host's name.
        assert_eq!(plan(&e, Some("127")).hosts.len(), 3);
        assert_eq!(plan(&e, None).hosts.len(), 3);
    }

    #[test]
    fn each_host_is_waited_for_once_in_file_order() {
        let e = entries(&["h2", "h1", "h2", "me", "me.x", "h1"]);
        assert_eq!(
            plan(&e, Some("me")),
            Plan {
                hosts: strings(&["h2", "h1"]),
                skipped: strings(&["me", "me.x"]),
            }
        );
    }
}
