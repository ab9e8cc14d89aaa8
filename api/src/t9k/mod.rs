//! TensorStack T9k's MPIJob API (`batch.tensorstack.dev/v1beta1`), a peer
//! of [`crate::kubeflow`].
//!
//! - `crate::v1beta1`: the types, in every schema era's shape;
//! - `crate::defaults::normalize`: the eras folded into one shape;
//! - [`resolve`]: validation, normalisation and the typed templates in one
//!   step, into a [`Resolved`] job, which the controller's builders take
//!   and never parse again.

pub mod resolve;

pub use resolve::{resolve, Resolved};
