//! The two MPIJob APIs behind one trait, so that the test environments
//! ([`crate::Env`], [`crate::e2e::E2e`]) are written once for both.

use std::fmt::Debug;

use kube::core::NamespaceResourceScope;
use kube::Resource;
use mpijob_api::kubeflow;
use mpijob_api::t9k::v1beta1::{MPIJobStatus, Phase};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A kind of MPIJob: the T9k one or the Kubeflow one. They say where a
/// job is in its life differently: T9k in `status.phase`, Kubeflow in
/// conditions.
pub trait JobKind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Status: Clone + Debug + Default + Serialize + Send + Sync;
    /// What a test waits for: a T9k phase, or the type of a Kubeflow
    /// condition that is then True.
    type Stage: Copy + Debug + Send + Sync;

    fn status_or_default(&self) -> Self::Status;
    fn reached(status: &Self::Status, stage: Self::Stage) -> bool;
    /// Succeeded or failed: the job goes no further.
    fn finished(status: &Self::Status) -> bool;
}

impl JobKind for mpijob_api::MPIJob {
    type Status = MPIJobStatus;
    type Stage = Phase;

    fn status_or_default(&self) -> MPIJobStatus {
        self.status.clone().unwrap_or_default()
    }

    fn reached(status: &MPIJobStatus, phase: Phase) -> bool {
        status.phase == Some(phase)
    }

    fn finished(status: &MPIJobStatus) -> bool {
        status.phase.is_some_and(Phase::is_finished)
    }
}

impl JobKind for kubeflow::MPIJob {
    type Status = kubeflow::JobStatus;
    type Stage = &'static str;

    fn status_or_default(&self) -> kubeflow::JobStatus {
        self.status.clone().unwrap_or_default()
    }

    fn reached(status: &kubeflow::JobStatus, condition: &'static str) -> bool {
        status.is_true(condition)
    }

    fn finished(status: &kubeflow::JobStatus) -> bool {
        status.is_finished()
    }
}
