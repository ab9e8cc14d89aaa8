//! Defaults. Pure functions, shared by serde (so a parsed job is already
//! defaulted), the CRD schema (so `kubectl explain` shows them) and
//! [`normalize`], which folds the alternative spellings into the canonical
//! ones.

use crate::contract;
use crate::v1beta1::{CleanUpWorkers, MPIJobSpec};

/// `spec.worker.replicas`.
pub fn replicas() -> i32 {
    1
}

/// `spec.ssh.sshAuthMountPath`.
pub fn ssh_auth_mount_path() -> String {
    contract::DEFAULT_SSH_AUTH_MOUNT_PATH.to_string()
}

/// `spec.ssh.sshdPath`.
pub fn sshd_path() -> String {
    contract::DEFAULT_SSHD_PATH.to_string()
}

/// `spec.runPolicy.cleanUpWorkers` when absent: keep the workers (their
/// sshd is still told to finish when the job ends).
pub fn clean_up_workers(spec: &MPIJobSpec) -> CleanUpWorkers {
    spec.run_policy
        .as_ref()
        .and_then(|p| p.clean_up_workers.clone())
        .unwrap_or(CleanUpWorkers::None)
}

/// Fold the older `enabled` spelling into `enable`. Run after validation,
/// which rejects a spec that sets both differently.
pub fn normalize(spec: &mut MPIJobSpec) {
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
