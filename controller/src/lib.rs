//! The MPIJob operator: two APIs as peers over one core.
//!
//! - `core`: what both APIs share (context and caches, apply, events,
//!   the status of pods); it imports nothing above it.
//! - `gang`: PodGroups for gang scheduling; it imports only `core`.
//! - `t9k` and `kubeflow`: one reconciler each, as a pipeline of
//!   dereference → resolve → build (pure) → apply → status. Neither imports
//!   the other.
//! - `runtime`: the wiring (watches, controllers, leader election, health,
//!   API discovery, the client's throttle). Only it and `main.rs` see every
//!   part.

pub mod core;
pub mod gang;
pub mod kubeflow;
pub mod runtime;
pub mod t9k;

pub use core::{Config, Context, Error};
