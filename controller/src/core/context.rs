//! What every reconcile shares: the client, the caches of the job's
//! children, the event recorder and the controller's settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::Client;

use super::error::{Error, Result};
use super::meta::JobMeta;
use super::metrics::Metrics;
pub use super::metrics::Write;
use super::pods::Pods;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// The image whose `/mpijob-agent` the init container copies into pods.
    pub agent_image: String,
    /// Its pull policy (`IfNotPresent` unless told otherwise).
    pub agent_image_pull_policy: String,
}

/// What every API's reconciler shares; each API's own context holds this,
/// its own caches and its gang settings.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub recorder: Recorder,
    /// The job's pods, secrets and services, by the job-name label. Of
    /// Secrets only the metadata is watched: their data never reaches the
    /// controller.
    pub pods: Pods,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub services: Store<Service>,
    /// What `/metrics` serves, API writes by kind among it.
    pub metrics: Arc<Metrics>,
    /// Objects created but not yet seen in the caches.
    pub expectations: Expectations,
    /// Whether every cache above (and the API's own) has synced.
    pub synced: Synced,
    /// When each large job was last reconciled.
    pub large_jobs: Pace,
}

/// Above this many workers a job is large: it is reconciled at most once
/// per [`Pace::EVERY`], and its status lists the plainly healthy workers
/// compactly, so that it stays well below what etcd stores (1.5 MiB an
/// object).
pub const COMPACT_ABOVE: usize = 1000;

/// Paces the reconciles of large jobs: at most one per [`Pace::EVERY`].
#[derive(Default, Debug)]
pub struct Pace {
    last: Mutex<HashMap<String, Instant>>,
}

impl Pace {
    pub const EVERY: Duration = Duration::from_secs(1);

    /// `None` (and the job counts as reconciled now) when the job may be
    /// reconciled; otherwise how long until it may.
    pub fn wait(&self, job: &JobMeta) -> Option<Duration> {
        let mut m = self.last.lock().expect("pace lock");
        let key = format!("{}/{}", job.namespace, job.name);
        if let Some(left) = m
            .get(&key)
            .and_then(|at| Self::EVERY.checked_sub(at.elapsed()))
        {
            return Some(left);
        }
        m.retain(|_, at| at.elapsed() < Self::EVERY);
        m.insert(key, Instant::now());
        None
    }
}

/// Whether a set of caches has synced. Any number of reconciles may wait on
/// it at once: kube's `Store::wait_until_ready` wakes only the last of
/// several concurrent waiters (its oneshot receiver keeps one waker), so
/// reconciles of jobs that exist at start-up could wait forever on it.
#[derive(Clone, Debug)]
pub struct Synced(tokio::sync::watch::Receiver<bool>);

impl Synced {
    /// A flag and the sender that raises it, once.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Synced) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Synced(rx))
    }

    /// Return once the caches have synced.
    pub async fn wait(&self) -> Result<()> {
        let mut rx = self.0.clone();
        rx.wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| Error::CachesClosed)
    }
}

/// Objects this controller created whose watch events have not arrived yet.
/// Without this, a reconcile that runs in between would find them missing
/// from the caches and create them again (to be refused with 409).
#[derive(Default, Debug)]
pub struct Expectations {
    created: Mutex<Created>,
}

/// What was created and when, and when the old entries were last dropped.
#[derive(Debug)]
struct Created {
    at: HashMap<String, Instant>,
    pruned: Instant,
}

impl Default for Created {
    fn default() -> Self {
        Created {
            at: HashMap::new(),
            pruned: Instant::now(),
        }
    }
}

impl Expectations {
    /// How long to trust a create whose watch event never comes.
    const TTL: Duration = Duration::from_secs(30);
    /// How often entries past their TTL are dropped: once per create
    /// walked every entry, and 9000 creates in a burst made that
    /// quadratic.
    const PRUNE_EVERY: Duration = Duration::from_secs(5);

    fn key(kind: &str, namespace: &str, name: &str) -> String {
        format!("{kind}/{namespace}/{name}")
    }

    /// Remember that we created it.
    pub fn created(&self, kind: &str, namespace: &str, name: &str) {
        let mut c = self.created.lock().expect("expectations lock");
        if c.pruned.elapsed() >= Self::PRUNE_EVERY {
            c.at.retain(|_, at| at.elapsed() < Self::TTL);
            c.pruned = Instant::now();
        }
        c.at.insert(Self::key(kind, namespace, name), Instant::now());
    }

    /// Whether we created it recently.
    pub fn pending(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let c = self.created.lock().expect("expectations lock");
        c.at.get(&Self::key(kind, namespace, name))
            .is_some_and(|at| at.elapsed() < Self::TTL)
    }

    /// The caches have it now.
    pub fn observed(&self, kind: &str, namespace: &str, name: &str) {
        self.created
            .lock()
            .expect("expectations lock")
            .at
            .remove(&Self::key(kind, namespace, name));
    }
}

impl Context {
    /// Count one API write request.
    pub fn wrote(&self, kind: Write) {
        self.metrics.wrote(kind);
    }
}
