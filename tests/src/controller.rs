//! Running the real controller in-process against the harness, watching one
//! test namespace, so that tests stay independent of each other.

use std::future::Future;
use std::time::{Duration, Instant};

use kube::Client;
use mpijob_controller::runtime;
use mpijob_controller::Config;
use tokio::task::JoinHandle;

/// The agent image name the controller puts in its init containers. No
/// kubelet runs here, so it is never pulled.
pub const AGENT_IMAGE: &str = "mpijob/agent:test";

/// A controller running in this process. Dropping it stops it abruptly, as
/// a crash would.
pub struct RunningController {
    handle: Option<JoinHandle<()>>,
}

impl RunningController {
    pub fn start(client: &Client, namespace: &str) -> RunningController {
        Self::start_with(client, namespace, None)
    }

    /// Start one with `--gang-scheduling` set to `gang`.
    pub fn start_gang(client: &Client, namespace: &str, gang: &str) -> RunningController {
        let gang = mpijob_controller::gang::GangScheduling::parse(gang).expect("a scheduler name");
        Self::start_full(client, namespace, None, Some(gang))
    }

    /// Start one with leader election through `lease`.
    pub fn start_with(
        client: &Client,
        namespace: &str,
        lease: Option<runtime::leader::LeaseConfig>,
    ) -> RunningController {
        Self::start_full(client, namespace, lease, None)
    }

    fn start_full(
        client: &Client,
        namespace: &str,
        lease: Option<runtime::leader::LeaseConfig>,
        gang: Option<mpijob_controller::gang::GangScheduling>,
    ) -> RunningController {
        // The controller's logs show with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,mpijob_controller=debug".into()),
            )
            .try_init();
        let client = client.clone();
        let opts = runtime::Options {
            namespace: Some(namespace.to_string()),
            cluster_domain: None,
            gang_scheduling: gang,
            health_addr: None,
            instance: format!("test-{namespace}"),
            leader: lease,
            apis: None,
        };
        let config = Config {
            agent_image: AGENT_IMAGE.to_string(),
            agent_image_pull_policy: "IfNotPresent".to_string(),
        };
        let handle = tokio::spawn(async move {
            if let Err(e) = runtime::run(client, config, opts).await {
                panic!("the controller stopped: {e:#}");
            }
        });
        RunningController {
            handle: Some(handle),
        }
    }

    /// Stop it now, mid-whatever, like a crash.
    pub async fn kill(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// Poll `check` every 100 ms until it returns `Some`, or panic after
/// `timeout` naming `what` and the last value seen.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match check().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
}
