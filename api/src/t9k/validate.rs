//! Validation of a T9k MPIJob, in every schema era. Pure: every error
//! names the field, the bad value and the fix, as one line, e.g.
//! `spec.worker.replicas: must be at least 1, got 0`. The checks both APIs
//! share (names, MCA parameters, argv entries) are in [`crate::validate`].

use std::collections::BTreeSet;

use super::v1beta1::{CleanUpWorkers, MPIJob, MPIJobSpec, MpiConfig, ReplicaType};
use crate::contract;
use crate::template::PodTemplate;
use crate::validate::{
    absolute_path, agent_in_image, argv_entries, job_name, mca_key, mca_value,
    template_with_containers, MAX_REPLICAS,
};
use crate::FieldError;

/// Check a whole job: its name (which every child's name derives from) and
/// its spec. Returns every problem found, in field order.
pub fn validate_job(job: &MPIJob) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    let replicas = workers(&job.spec).1;
    match job.metadata.name.as_deref() {
        None | Some("") => errors.push(FieldError::new(
            "metadata.name",
            "is required: name the job, e.g. pi",
        )),
        Some(name) => {
            if let Err(e) = job_name(name, replicas) {
                errors.push(e);
            }
        }
    }
    if let Err(e) = agent_in_image(job.metadata.annotations.as_ref()) {
        errors.push(e);
    }
    if let Err(mut spec_errors) = validate_spec(&job.spec) {
        errors.append(&mut spec_errors);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Where the workers are described, whatever the schema era: the field
/// path of their count, the count, and the path and value of their
/// template.
fn workers(spec: &MPIJobSpec) -> (String, i32, String, &PodTemplate) {
    match spec
        .replica_specs
        .iter()
        .position(|r| r.replica_type == ReplicaType::Worker)
    {
        Some(i) => {
            let r = &spec.replica_specs[i];
            (
                format!("spec.replicaSpecs[{i}].replicas"),
                r.replicas
                    .unwrap_or_else(crate::t9k::v1beta1::default_replicas),
                format!("spec.replicaSpecs[{i}].template"),
                &r.template,
            )
        }
        None => (
            "spec.worker.replicas".to_string(),
            spec.worker().replicas,
            "spec.worker.template".to_string(),
            &spec.worker().template,
        ),
    }
}

/// A value that a spec may give in either of two eras' fields: the field
/// it was given in, and the value (the seed schema's field when neither).
fn one_of<'a, T: ?Sized>(
    seed: (&'static str, &'a T),
    later: Option<(&'static str, &'a T)>,
    given: impl Fn(&T) -> bool,
    e: &mut Vec<FieldError>,
    what: &str,
) -> (&'static str, &'a T) {
    match later {
        Some(l) if given(l.1) => {
            if given(seed.1) {
                e.push(FieldError::new(
                    l.0,
                    format!(
                        "and {} both give {what}: keep one ({} is the seed schema's field, {} the 2025 schema's)",
                        seed.0, seed.0, l.0
                    ),
                ));
            }
            l
        }
        _ => seed,
    }
}

/// Check the spec alone, in whichever schema era it is written: the seed
/// schema (`worker`, `mca`, `mpiHome`), pre-2023 (plus
/// `worker.processesPerWorker` and `worker.processRecovery`) or 2025
/// (`mpiConfig` and `replicaSpecs`). Saying one thing in two eras' fields
/// is an error that names both.
pub fn validate_spec(spec: &MPIJobSpec) -> Result<(), Vec<FieldError>> {
    let mut e = Vec::new();
    let w = spec.worker();
    let config = spec.mpi_config.as_ref();

    replica_types(
        "spec.replicaSpecs",
        spec.replica_specs.iter().map(|r| &r.replica_type),
        &mut e,
    );
    let worker_entry = spec
        .replica_specs
        .iter()
        .position(|r| r.replica_type == ReplicaType::Worker);
    let no_workers = worker_entry.is_none() && spec.worker.is_none() && spec.is_2025_schema();
    match (worker_entry, &spec.worker) {
        (Some(i), Some(_)) => e.push(FieldError::new(
            format!("spec.replicaSpecs[{i}]"),
            "and spec.worker both describe the workers: keep one (spec.worker is the seed schema's field, spec.replicaSpecs the 2025 schema's)",
        )),
        _ if no_workers => e.push(FieldError::new(
            "spec.replicaSpecs",
            "must have an entry of type worker: add {type: worker, replicas: 2, template: {spec: {containers: [...]}}}",
        )),
        _ => {}
    }
    for (i, r) in spec.replica_specs.iter().enumerate() {
        if r.replica_type != ReplicaType::Launcher {
            continue;
        }
        if let Some(n) = r.replicas.filter(|n| *n != 1) {
            e.push(FieldError::new(
                format!("spec.replicaSpecs[{i}].replicas"),
                format!("must be 1, got {n}: a job has one launcher"),
            ));
        }
        if !r.template.is_empty() {
            template_with_containers(
                &format!("spec.replicaSpecs[{i}].template"),
                &r.template,
                &mut e,
            );
        }
    }

    let (replicas_at, replicas, template_at, template) = workers(spec);
    if replicas < 1 {
        e.push(FieldError::new(
            &replicas_at,
            format!("must be at least 1, got {replicas}"),
        ));
    } else if replicas > MAX_REPLICAS {
        e.push(FieldError::new(
            &replicas_at,
            format!("must be at most {MAX_REPLICAS}, got {replicas}"),
        ));
    }

    let later = |f: fn(&MpiConfig) -> &Vec<String>, at| config.map(|c| (at, f(c)));
    let (cmd_at, cmd) = one_of(
        ("spec.worker.cmd", &w.cmd),
        later(|c| &c.script, "spec.mpiConfig.script"),
        |v| !v.is_empty(),
        &mut e,
        "the command mpirun starts",
    );
    let (args_at, args) = one_of(
        ("spec.worker.extraMPIArgs", &w.extra_mpi_args),
        later(|c| &c.extra_args, "spec.mpiConfig.extraArgs"),
        |v| !v.is_empty(),
        &mut e,
        "mpirun's extra arguments",
    );
    let (mca_at, mca) = one_of(
        ("spec.mca", &spec.mca),
        config.map(|c| ("spec.mpiConfig.mca", &c.mca)),
        |m| !m.is_empty(),
        &mut e,
        "the MCA parameters",
    );
    let (home_at, home) = one_of(
        ("spec.mpiHome", &spec.mpi_home),
        config.map(|c| ("spec.mpiConfig.home", &c.home)),
        Option::is_some,
        &mut e,
        "the MPI installation",
    );

    if cmd.is_empty() {
        let (at, other) = if spec.is_2025_schema() {
            ("spec.mpiConfig.script", "spec.worker.cmd")
        } else {
            ("spec.worker.cmd", "spec.mpiConfig.script")
        };
        e.push(FieldError::new(
            at,
            format!("must not be empty: give the command mpirun starts on every slot, e.g. [python, train.py] (or give it as {other})"),
        ));
    } else if cmd[0].is_empty() {
        e.push(FieldError::new(
            format!("{cmd_at}[0]"),
            "must not be empty: it is the program mpirun starts, e.g. python",
        ));
    }
    argv_entries(cmd_at, cmd, &mut e);
    argv_entries(args_at, args, &mut e);
    let request = crate::slots::request(args_at, args);
    if let Err(err) = &request {
        e.push(err.clone());
    }
    if let Some(n) = w.processes_per_worker.filter(|n| *n < 1) {
        e.push(FieldError::new(
            "spec.worker.processesPerWorker",
            format!("must be at least 1, got {n}: it is the number of ranks on each worker"),
        ));
    }
    if let Some(r) = &w.process_recovery {
        if let Some(n) = r.limit.filter(|n| *n < 0) {
            e.push(FieldError::new(
                "spec.worker.processRecovery.limit",
                format!("must be at least 0, got {n}: it is how often a rank may be restarted"),
            ));
        }
        if let Some(i) = args
            .iter()
            .position(|a| matches!(a.as_str(), "--enable-recovery" | "--max-restarts"))
            .filter(|_| r.enable)
        {
            e.push(FieldError::new(
                "spec.worker.processRecovery",
                format!(
                    "and {args_at}[{i}] ({}) both set up process recovery: keep one (processRecovery becomes --enable-recovery and --max-restarts)",
                    args[i]
                ),
            ));
        }
    }

    if !no_workers {
        template_with_containers(&template_at, template, &mut e);
    }

    for (key, value) in mca {
        let at = |mut err: FieldError| {
            err.path = err.path.replacen("spec.mca", mca_at, 1);
            err
        };
        if let Err(err) = mca_key(key) {
            e.push(at(err));
        }
        if let Err(err) = mca_value(key, value) {
            e.push(at(err));
        }
    }
    if let Some(home) = home {
        absolute_path(home_at, home, "/usr/local", &mut e);
    }

    absolute_path(
        "spec.ssh.sshAuthMountPath",
        &spec.ssh.ssh_auth_mount_path,
        contract::DEFAULT_SSH_AUTH_MOUNT_PATH,
        &mut e,
    );
    absolute_path(
        "spec.ssh.sshdPath",
        &spec.ssh.sshd_path,
        contract::DEFAULT_SSHD_PATH,
        &mut e,
    );

    if let Some(CleanUpWorkers::Invalid(raw)) = spec
        .run_policy
        .as_ref()
        .and_then(|p| p.clean_up_workers.as_ref())
    {
        e.push(FieldError::new(
            "spec.runPolicy.cleanUpWorkers",
            format!("must be true, false, \"all\", \"unfinished\" or \"none\", got {raw}"),
        ));
    }

    if let Some(t9k) = spec
        .scheduler
        .as_ref()
        .and_then(|s| s.t9k_scheduler.as_ref())
    {
        if t9k.queue.as_deref().unwrap_or("").trim().is_empty() {
            e.push(FieldError::new(
                "spec.scheduler.t9kScheduler.queue",
                "is required when t9kScheduler is set: name the queue to submit to, e.g. default",
            ));
        }
        if !(0..=100).contains(&t9k.priority) {
            e.push(FieldError::new(
                "spec.scheduler.t9kScheduler.priority",
                format!("must be between 0 and 100, got {}", t9k.priority),
            ));
        }
    }

    if let Some(mode) = &spec.run_mode {
        if let Some(debug) = &mode.debug {
            both_spellings("spec.runMode.debug", debug.enable, debug.enabled, &mut e);
            let types = debug.replica_specs.iter().map(|r| &r.replica_type);
            replica_types("spec.runMode.debug.replicaSpecs", types, &mut e);
            for (i, r) in debug.replica_specs.iter().enumerate() {
                argv_entries(
                    &format!("spec.runMode.debug.replicaSpecs[{i}].command"),
                    &r.command,
                    &mut e,
                );
            }
        }
        if let Some(pause) = &mode.pause {
            both_spellings("spec.runMode.pause", pause.enable, pause.enabled, &mut e);
            let types = pause.resume_specs.iter().map(|r| &r.replica_type);
            replica_types("spec.runMode.pause.resumeSpecs", types, &mut e);
            for (i, r) in pause.resume_specs.iter().enumerate() {
                let at = format!("spec.runMode.pause.resumeSpecs[{i}]");
                argv_entries(&format!("{at}.command"), &r.command, &mut e);
                argv_entries(&format!("{at}.args"), &r.args, &mut e);
                if r.replica_type == ReplicaType::Worker
                    && r.command.is_empty()
                    && !r.args.is_empty()
                {
                    e.push(FieldError::new(
                        format!("{at}.args"),
                        "needs a command on a worker: a worker's normal command is the agent running sshd, which takes no arguments from here; give command and args, or neither",
                    ));
                }
            }
        }
    }

    if e.is_empty() {
        Ok(())
    } else {
        Err(e)
    }
}

fn both_spellings(
    field: &str,
    enable: Option<bool>,
    enabled: Option<bool>,
    e: &mut Vec<FieldError>,
) {
    if let (Some(a), Some(b)) = (enable, enabled) {
        if a != b {
            e.push(FieldError::new(
                field,
                format!("enable is {a} but enabled is {b}: set only one of them (enabled is the older spelling)"),
            ));
        }
    }
}

fn replica_types<'a>(
    field: &str,
    types: impl Iterator<Item = &'a ReplicaType>,
    e: &mut Vec<FieldError>,
) {
    let mut seen = BTreeSet::new();
    for (i, t) in types.enumerate() {
        let at = format!("{field}[{i}].type");
        match t {
            ReplicaType::Invalid(raw) => e.push(FieldError::new(
                at,
                format!("must be launcher, master or worker, got {raw:?}"),
            )),
            t if !seen.insert(t.clone()) => e.push(FieldError::new(
                at,
                format!(
                    "{} is listed twice: give each replica type once (master is launcher)",
                    t.as_str()
                ),
            )),
            _ => {}
        }
    }
}
