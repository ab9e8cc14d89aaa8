//! The MPIJob operator.
//!
//! Reconcile is a pipeline, one module per step (see `reconcile`):
//! validate → build (pure) → apply → status. `run` wires it to the API
//! server; `main.rs` only parses arguments.

pub mod context;
pub mod error;
pub mod gang;
pub mod health;
pub mod kubeflow;
pub mod leader;
pub mod metrics;
pub mod pods;
pub mod reconcile;
pub mod run;
pub mod throttle;

pub use context::{Config, Context};
pub use error::Error;
