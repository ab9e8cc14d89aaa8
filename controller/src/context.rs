//! What every reconcile shares: the client, the caches of the job's
//! children, the event recorder and the controller's settings.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::Client;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// The image whose `/mpijob-agent` the init container copies into pods.
    pub agent_image: String,
    /// Its pull policy (`IfNotPresent` unless told otherwise).
    pub agent_image_pull_policy: String,
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    /// The job's pods, secrets and services, by the job-name label.
    pub pods: Store<Pod>,
    pub secrets: Store<Secret>,
    pub services: Store<Service>,
    /// API writes made, for the benchmark and the metrics endpoint.
    pub writes: AtomicU64,
}

impl Context {
    /// Count one API write request.
    pub fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}
