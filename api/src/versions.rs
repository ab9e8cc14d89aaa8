//! The API versions this project serves, in one leaf module that every
//! reader of manifests can name.

/// The T9k MPIJob's `apiVersion`.
pub const T9K: &str = "batch.tensorstack.dev/v1beta1";
/// Kubeflow's API group.
pub const KUBEFLOW_GROUP: &str = "kubeflow.org";
/// The Kubeflow MPIJob's `apiVersion`.
pub const KUBEFLOW: &str = "kubeflow.org/v2beta1";
