//! Kubeflow's MPIJob API (`kubeflow.org/v2beta1`), served next to the T9k
//! one as a drop-in for Kubeflow's mpi-operator.
//!
//! - [`v2beta1`]: the types, with Kubeflow's JSON shapes.
//! - [`resolve`]: defaults and validation in one step, into a typed
//!   [`resolve::Resolved`] job.
//!
//! What both APIs share (names, the agent's arguments, hostfile formats)
//! lives in [`crate::contract`].

pub mod contract;
pub mod resolve;
pub mod v2beta1;

pub use resolve::{resolve, Resolved};
pub use v2beta1::{JobStatus, MPIJob, MPIJobSpec};

use crate::{FieldError, FieldErrors};

/// The API group.
pub const GROUP: &str = crate::versions::KUBEFLOW_GROUP;
/// The `apiVersion` of Kubeflow MPIJobs.
pub const API_VERSION: &str = crate::versions::KUBEFLOW;

/// Parse and check a manifest: the job and its resolved spec, or every
/// problem found.
pub fn parse(text: &str) -> Result<(MPIJob, Resolved), FieldErrors> {
    let value =
        crate::manifest::parse_value(text, API_VERSION).map_err(|e| FieldErrors(vec![e]))?;
    let job: MPIJob = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        FieldErrors(vec![FieldError::new(path, e.into_inner().to_string())])
    })?;
    let resolved = resolve(&job).map_err(FieldErrors)?;
    Ok((job, resolved))
}
