//! Test support for integration tests against the real kube-apiserver
//! harness started by `tests/cluster/cluster.sh start`.
//!
//! Nothing here is product code. When the harness is not running, every
//! helper panics with a message that says how to start it: integration
//! tests never skip.

pub mod cluster;
pub mod cluster_dns;
pub mod controller;
pub mod crds;
pub mod e2e;
pub mod env;
pub mod fixtures;
pub mod kind;
pub mod kubelet_stand_in;
pub mod namespace;

pub use cluster::Harness;
pub use env::{merge, Env, T};
pub use kind::JobKind;
pub use namespace::TestNamespace;
