//! Defaults that need the whole spec, and [`normalize`], which folds the
//! schema eras and alternative spellings into the canonical ones. A
//! field's own default sits beside it in `v1beta1`, where serde (so a
//! parsed job is already defaulted) and the CRD schema (so `kubectl
//! explain` shows it) find it.

use super::v1beta1::{default_replicas, CleanUpWorkers, MPIJobSpec, ReplicaType};

/// `spec.runPolicy.cleanUpWorkers` when absent: keep the workers (their
/// sshd is still told to finish when the job ends).
pub fn clean_up_workers(spec: &MPIJobSpec) -> CleanUpWorkers {
    spec.run_policy
        .as_ref()
        .and_then(|p| p.clean_up_workers.clone())
        .unwrap_or(CleanUpWorkers::None)
}

/// Bring a spec of any schema era into the one internal shape that the
/// controller and local mode act on, and fold the older `enabled` spelling
/// into `enable`. Run after validation, which rejects a spec that says one
/// thing in two eras' fields, or sets both spellings differently.
///
/// The internal shape is the seed schema's, plus `processesPerWorker` and
/// the launcher's own template:
/// - 2025 `replicaSpecs[type=worker]` becomes `worker.replicas` and
///   `worker.template`; a `launcher` entry stays only if it has a template;
/// - 2025 `mpiConfig.{home, mca, extraArgs, script}` become `mpiHome`,
///   `mca`, `worker.extraMPIArgs` and `worker.cmd`;
/// - pre-2023 `worker.processRecovery` becomes `--enable-recovery` and
///   `--max-restarts LIMIT` at the front of `worker.extraMPIArgs`.
///
/// Normalising twice changes nothing.
pub fn normalize(spec: &mut MPIJobSpec) {
    let mut worker = spec.worker.take().unwrap_or_default();
    if let Some(i) = spec
        .replica_specs
        .iter()
        .position(|r| r.replica_type == ReplicaType::Worker)
    {
        let r = spec.replica_specs.remove(i);
        worker.replicas = r.replicas.unwrap_or_else(default_replicas);
        worker.template = r.template;
    }
    spec.replica_specs
        .retain(|r| r.replica_type == ReplicaType::Launcher && !r.template.is_empty());
    if let Some(c) = spec.mpi_config.take() {
        spec.mpi_home = c.home.or(spec.mpi_home.take());
        if !c.mca.is_empty() {
            spec.mca = c.mca;
        }
        if !c.extra_args.is_empty() {
            worker.extra_mpi_args = c.extra_args;
        }
        if !c.script.is_empty() {
            worker.cmd = c.script;
        }
    }
    if let Some(r) = worker.process_recovery.take().filter(|r| r.enable) {
        let mut args = vec!["--enable-recovery".to_string()];
        if let Some(limit) = r.limit {
            args.extend(["--max-restarts".to_string(), limit.to_string()]);
        }
        args.append(&mut worker.extra_mpi_args);
        worker.extra_mpi_args = args;
    }
    spec.worker = Some(worker);

    if let Some(mode) = spec.run_mode.as_mut() {
        if let Some(debug) = mode.debug.as_mut() {
            debug.enable = debug.enable.or(debug.enabled.take());
        }
        if let Some(pause) = mode.pause.as_mut() {
            pause.enable = pause.enable.or(pause.enabled.take());
        }
    }
}

/// Whether debug mode is on, under either spelling.
pub fn debug_enabled(spec: &MPIJobSpec) -> bool {
    spec.run_mode
        .as_ref()
        .and_then(|m| m.debug.as_ref())
        .and_then(|d| d.enable.or(d.enabled))
        .unwrap_or(false)
}

/// Whether pause mode is on, under either spelling.
pub fn pause_enabled(spec: &MPIJobSpec) -> bool {
    spec.run_mode
        .as_ref()
        .and_then(|m| m.pause.as_ref())
        .and_then(|p| p.enable.or(p.enabled))
        .unwrap_or(false)
}
