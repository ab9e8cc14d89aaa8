//! TensorStack T9k's MPIJob API (`batch.tensorstack.dev/v1beta1`), a peer
//! of the Kubeflow API beside it.
//!
//! - [`v1beta1`]: the types, in every schema era's shape;
//! - [`validate`]: the checks, each error naming the field, the value and
//!   the fix;
//! - [`defaults`]: the defaults that need the whole spec, and `normalize`,
//!   which folds the eras into one shape;
//! - [`resolve`]: validation, normalisation and the typed templates in one
//!   step, into a [`Resolved`] job, which the controller's builders take
//!   and never parse again.
//!
//! What both APIs share (names, the agent's arguments, hostfile formats,
//! the checks of names and MCA parameters) lives in [`crate::contract`]
//! and [`crate::validate`].

pub mod defaults;
pub mod resolve;
pub mod v1beta1;
pub mod validate;

pub use resolve::{resolve, Resolved};
