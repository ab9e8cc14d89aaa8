//! One test's world on the API-server harness: a fresh namespace with the
//! CRDs installed, a client, and the kubelet stand-in, for jobs of kind `K`
//! (either MPIJob API).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource};
use serde_json::Value;

use crate::controller::{wait_for, RunningController};
use crate::kubelet_stand_in::KubeletStandIn;
use crate::{crds, Harness, JobKind, TestNamespace};

/// How long a test waits for the controller by default.
pub const T: Duration = Duration::from_secs(30);

/// Merge `patch` into `into` as a JSON merge patch does, except that a
/// `null` is kept as a value rather than removing the key.
pub fn merge(into: &mut Value, patch: Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Dropping it deletes the namespace.
pub struct Env<K> {
    pub harness: Harness,
    pub client: Client,
    pub ns: TestNamespace,
    pub jobs: Api<K>,
    pub pods: Api<Pod>,
    pub kubelet: KubeletStandIn,
}

impl<K: JobKind> Env<K> {
    /// Install the CRDs and make namespace `t-<prefix>-…`.
    pub async fn new(prefix: &str) -> Self {
        let harness = Harness::get();
        let client = harness.client().await;
        crds::install(&client).await;
        let ns = TestNamespace::new(&client, &harness, prefix).await;
        Env {
            jobs: Api::namespaced(client.clone(), &ns.name),
            pods: Api::namespaced(client.clone(), &ns.name),
            kubelet: KubeletStandIn::new(&client, &ns.name),
            harness,
            client,
            ns,
        }
    }

    /// Resources of any namespaced kind in the test's namespace.
    pub fn api<R>(&self) -> Api<R>
    where
        R: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// The controller, in this process, watching the test's namespace.
    pub fn controller(&self) -> RunningController {
        RunningController::start(&self.client, &self.ns.name)
    }

    /// Create a job of either API, by its `apiVersion`, through its typed
    /// struct as a client of that API would.
    pub async fn create(&self, job: Value) {
        let kubeflow = mpijob_api::kubeflow::MPIJob::api_version(&());
        if job["apiVersion"] == *kubeflow {
            self.create_as::<mpijob_api::kubeflow::MPIJob>(job).await;
        } else {
            self.create_as::<mpijob_api::MPIJob>(job).await;
        }
    }

    async fn create_as<J: JobKind>(&self, job: Value) {
        let job: J = serde_json::from_value(job).unwrap();
        self.api::<J>()
            .create(&PostParams::default(), &job)
            .await
            .unwrap();
    }

    pub async fn status(&self, name: &str) -> K::Status {
        self.jobs.get(name).await.unwrap().status_or_default()
    }

    /// Wait up to [`T`] for job `name` to reach `stage`.
    pub async fn wait_phase(&self, name: &str, stage: K::Stage) -> K::Status {
        self.wait_job::<K>(name, stage, T).await
    }

    /// Wait up to `timeout` for job `name`, of any kind, to reach `stage`.
    pub async fn wait_job<J: JobKind>(
        &self,
        name: &str,
        stage: J::Stage,
        timeout: Duration,
    ) -> J::Status {
        let jobs = self.api::<J>();
        wait_for(&format!("{name} to be {stage:?}"), timeout, || async {
            let s = jobs.get(name).await.unwrap().status_or_default();
            if J::reached(&s, stage) {
                Ok(s)
            } else {
                Err(format!("{s:?}"))
            }
        })
        .await
    }

    /// Events about `job` (of either API), as `reason: note` lines, oldest
    /// first.
    pub async fn events(&self, job: &str) -> Vec<String> {
        let mut list: Vec<Event> = self
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(job))
            .collect();
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect()
    }

    pub async fn wait_event(&self, job: &str, line: &str) {
        wait_for(&format!("event {line:?}"), T, || async {
            let events = self.events(job).await;
            if events.iter().any(|e| e == line) {
                Ok(())
            } else {
                Err(format!("{events:?}"))
            }
        })
        .await
    }
}
