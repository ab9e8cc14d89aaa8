//! The MPIJob API: types, defaults, validation and the pod contract.
//!
//! Pure: nothing here does I/O, so the controller, the agent and their tests
//! share one definition of what a valid job is.

pub mod contract;
pub mod convert;
pub mod crd;
pub mod duration;
mod error;
pub mod kubeflow;
pub mod manifest;
pub mod schema;
pub mod slots;
pub mod sshclient;
pub mod sshkey;
pub mod t9k;
pub mod template;
pub mod validate;
pub mod versions;
pub mod yaml;

pub use error::{FieldError, FieldErrors};
/// T9k's MPIJob, the types most callers want, at the root for brevity.
pub use t9k::v1beta1::{MPIJob, MPIJobSpec, MPIJobStatus};
