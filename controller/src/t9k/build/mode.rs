//! What each replica runs under the T9k API's run modes. Pure.
//!
//! - **`runMode.debug`**: a replica type listed in `replicaSpecs` with a
//!   `command` runs that command instead of its role. The launcher, when
//!   not given one, waits for the workers, writes the hostfile and the ssh
//!   client files, prints the mpirun command and stays up (`--hold`); the
//!   workers run sshd as usual.
//! - **`runMode.pause.resumeSpecs`**, for pods created while the job is
//!   `Resuming`: on the launcher, `command` and `args` replace what mpirun
//!   starts on every slot (`worker.cmd`), since that is the program a
//!   resumed run must start differently (e.g. `--resume-from`); `args`
//!   alone keeps `worker.cmd`'s program. On a worker, `command` and `args`
//!   replace the container's command: the agent and its sshd are then not
//!   run, so the image must start its own sshd.
//!
//! In both, `skipInitContainer` leaves out the template's own init
//! containers; the one that delivers the agent stays unless the replica
//! runs a command of its own and so does not need the agent.

use mpijob_api::t9k::v1beta1::ReplicaType;
use mpijob_api::t9k::Resolved;

use super::Role;

/// How one replica departs from its normal role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Override {
    /// The container's own command and args, instead of the agent.
    pub command: Option<(Vec<String>, Vec<String>)>,
    /// Leave out the template's init containers.
    pub skip_template_init: bool,
    /// The launcher stays up instead of running mpirun (debug mode).
    pub hold: bool,
    /// What mpirun starts on every slot, instead of `worker.cmd`.
    pub mpirun_cmd: Option<Vec<String>>,
}

impl Override {
    /// Whether the replica runs the agent (and so needs it delivered).
    pub fn runs_agent(&self) -> bool {
        self.command.is_none()
    }
}

/// The override for `role`'s pod; `resumed` when the pod is created while
/// the job is `Resuming`.
pub fn of(job: &Resolved, role: Role, resumed: bool) -> Override {
    let want = role.replica_type();
    let mode = job.spec.run_mode.as_ref();
    if job.debug {
        let entry = mode
            .and_then(|m| m.debug.as_ref())
            .and_then(|d| d.replica_specs.iter().find(|r| r.replica_type == want));
        let command = entry.map(|e| e.command.clone()).filter(|c| !c.is_empty());
        return Override {
            hold: want == ReplicaType::Launcher && command.is_none(),
            command: command.map(|c| (c, Vec::new())),
            skip_template_init: entry.is_some_and(|e| e.skip_init_container),
            mpirun_cmd: None,
        };
    }
    if !resumed {
        return Override::default();
    }
    let Some(entry) = mode
        .and_then(|m| m.pause.as_ref())
        .and_then(|p| p.resume_specs.iter().find(|r| r.replica_type == want))
    else {
        return Override::default();
    };
    let mut o = Override {
        skip_template_init: entry.skip_init_container,
        ..Override::default()
    };
    match want {
        ReplicaType::Launcher => {
            let normal = &job.spec.worker().cmd;
            o.mpirun_cmd = if !entry.command.is_empty() {
                Some(entry.command.iter().chain(&entry.args).cloned().collect())
            } else if !entry.args.is_empty() {
                Some(normal.iter().take(1).chain(&entry.args).cloned().collect())
            } else {
                None
            };
        }
        _ => {
            if !entry.command.is_empty() {
                o.command = Some((entry.command.clone(), entry.args.clone()));
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::t9k::build::fixtures;

    fn job(run_mode: &str) -> mpijob_api::MPIJob {
        let mut job = fixtures::job(fixtures::PI);
        job.spec.run_mode = Some(mpijob_api::yaml::from_str(run_mode).unwrap());
        mpijob_api::t9k::defaults::normalize(&mut job.spec);
        job
    }

    #[test]
    fn no_mode_no_override() {
        let j = fixtures::job(fixtures::PI);
        for role in [Role::Launcher, Role::Worker(0)] {
            assert_eq!(
                of(&fixtures::resolved(&j), role, false),
                Override::default()
            );
            assert_eq!(of(&fixtures::resolved(&j), role, true), Override::default());
        }
    }

    #[test]
    fn debug_holds_the_launcher_and_runs_listed_commands() {
        let j = job("{debug: {enable: true}}");
        assert!(of(&fixtures::resolved(&j), Role::Launcher, false).hold);
        assert!(of(&fixtures::resolved(&j), Role::Launcher, false).runs_agent());
        assert_eq!(
            of(&fixtures::resolved(&j), Role::Worker(1), false),
            Override::default()
        );

        let j = job("{debug: {enable: true, replicaSpecs: [{type: worker, command: [sleep, inf], skipInitContainer: true}, {type: master, skipInitContainer: true}]}}");
        let w = of(&fixtures::resolved(&j), Role::Worker(0), false);
        assert_eq!(
            w.command,
            Some((vec!["sleep".into(), "inf".into()], vec![]))
        );
        assert!(w.skip_template_init && !w.runs_agent() && !w.hold);
        let l = of(&fixtures::resolved(&j), Role::Launcher, false);
        assert!(l.hold && l.skip_template_init && l.runs_agent());
    }

    #[test]
    fn resume_specs_apply_only_to_a_resumed_run() {
        let j = job("{pause: {enable: false, resumeSpecs: [{type: launcher, command: [echo], args: [resumed]}, {type: worker, command: [/usr/sbin/sshd, -D], args: [-p, '2222']}]}}");
        assert_eq!(
            of(&fixtures::resolved(&j), Role::Launcher, false),
            Override::default()
        );
        let l = of(&fixtures::resolved(&j), Role::Launcher, true);
        assert_eq!(l.mpirun_cmd, Some(vec!["echo".into(), "resumed".into()]));
        assert!(l.runs_agent());
        let w = of(&fixtures::resolved(&j), Role::Worker(0), true);
        assert_eq!(
            w.command,
            Some((
                vec!["/usr/sbin/sshd".into(), "-D".into()],
                vec!["-p".into(), "2222".into()]
            ))
        );
        // `args` alone keeps the program of `worker.cmd`.
        let j = job("{pause: {resumeSpecs: [{type: launcher, args: ['5']}]}}");
        let cmd = &j.spec.worker().cmd;
        assert_eq!(
            of(&fixtures::resolved(&j), Role::Launcher, true).mpirun_cmd,
            Some(vec![cmd[0].clone(), "5".into()])
        );
    }
}
