//! One namespace per test, deleted when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::Harness;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace made for one test. Dropping it deletes it (in the
/// background: the namespace controller finishes the job).
pub struct TestNamespace {
    pub name: String,
    harness: Harness,
}

impl TestNamespace {
    /// Create `t-<prefix>-<pid>-<n>` and wait for its `default`
    /// ServiceAccount, without which pods cannot be created.
    pub async fn new(client: &Client, harness: &Harness, prefix: &str) -> TestNamespace {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t-{prefix}-{}-{n}", std::process::id());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"mpijob-test": "true"}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        for _ in 0..300 {
            // Pods can be created once the account's token Secret exists.
            let sa = sas.get_opt("default").await.unwrap();
            if sa.is_some_and(|sa| sa.secrets.is_some_and(|s| !s.is_empty())) {
                return TestNamespace {
                    name,
                    harness: harness.clone(),
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("namespace {name} got no default ServiceAccount with a token in 30 s: is kube-controller-manager running?");
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Synchronous, so that it also runs when a test panics.
        let _ = self
            .harness
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// Delete a namespace and wait until it is gone.
pub async fn delete_and_wait(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    for _ in 0..1800 {
        if api.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("namespace {name} still exists after 180 s");
}
