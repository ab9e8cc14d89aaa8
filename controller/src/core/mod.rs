//! What both APIs' reconcilers share, and nothing that knows either API:
//! the context and its caches, the apply engine and its expectations,
//! events and the error policy, the agent's place in a pod, and a pod's
//! failure in words. Nothing here imports `gang`, `t9k`, `kubeflow` or
//! `runtime`.

pub mod agent;
pub mod apply;
pub mod context;
pub mod discovery;
pub mod error;
pub mod events;
pub mod failure;
pub mod meta;
pub mod metrics;
pub mod pods;
pub mod status;

pub use context::{Config, Context};
pub use error::{Error, Result};
pub use meta::JobMeta;
