//! Wiring: one watch per kind, shared by the controller's triggers and the
//! caches the reconciler reads from.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{controller, reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use mpijob_api::contract::labels;
use mpijob_api::MPIJob;

use crate::context::{Config, Context};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};

/// Where to watch and serve.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub health_addr: Option<SocketAddr>,
    /// This instance's name in events (the pod name in a cluster).
    pub instance: String,
    /// Leader election; `None` runs without it (a single replica).
    pub leader: Option<crate::leader::LeaseConfig>,
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the operator until SIGTERM or Ctrl-C.
pub async fn run(client: Client, config: Config, opts: Options) -> anyhow::Result<()> {
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = opts.health_addr {
        let health = health.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::health::serve(addr, health, metrics).await {
                tracing::error!(%addr, error = %e, "health endpoint failed");
            }
        });
    }
    if let Some(lease) = &opts.leader {
        health.standby.store(true, Ordering::Relaxed);
        crate::leader::acquire(&client, lease).await;
        health.standby.store(false, Ordering::Relaxed);
    }

    // Only the job's own children are cached: they carry the job-name label.
    let children = watcher::Config::default().labels(labels::JOB_NAME);

    // managedFields are dropped from the caches: nothing reads them, and
    // they are a large share of each object. Secrets are watched as
    // metadata only: their key material never reaches the controller.
    let (pods, pods_writer) = reflector::store::<Pod>();
    let pod_events = reflector(
        pods_writer,
        watcher(api::<Pod>(&client, &opts.namespace), children.clone())
            .modify(|p| p.metadata.managed_fields = None),
    )
    .default_backoff()
    .touched_objects();
    let (secrets, secrets_writer) = reflector::store::<PartialObjectMeta<Secret>>();
    let secret_events = reflector(
        secrets_writer,
        watcher(
            api::<PartialObjectMeta<Secret>>(&client, &opts.namespace),
            children.clone(),
        )
        .modify(|s| s.metadata.managed_fields = None),
    )
    .default_backoff()
    .touched_objects();
    let (services, services_writer) = reflector::store::<Service>();
    let service_events = reflector(
        services_writer,
        watcher(api::<Service>(&client, &opts.namespace), children)
            .modify(|s| s.metadata.managed_fields = None),
    )
    .default_backoff()
    .touched_objects();

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "mpijob-controller".into(),
            instance: Some(opts.instance.clone()),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        recorder,
        pods: pods.clone(),
        secrets: secrets.clone(),
        services: services.clone(),
        metrics: metrics.clone(),
        expectations: Default::default(),
    });

    {
        let health = health.clone();
        let (pods, secrets, services) = (pods.clone(), secrets.clone(), services.clone());
        tokio::spawn(async move {
            let _ = tokio::join!(
                pods.wait_until_ready(),
                secrets.wait_until_ready(),
                services.wait_until_ready()
            );
            health.ready.store(true, Ordering::Relaxed);
            tracing::info!("caches synced; serving");
        });
    }

    let jobs = api::<MPIJob>(&client, &opts.namespace);
    tracing::info!(
        namespace = opts.namespace.as_deref().unwrap_or("<all>"),
        "mpijob-controller starting"
    );
    let controller = Controller::new(jobs, watcher::Config::default())
        // A job's pods change in bursts (created together, started
        // together): one reconcile per burst, not one per pod.
        .with_config(controller::Config::default().debounce(Duration::from_millis(0)))
        .owns_stream(pod_events)
        .owns_stream(secret_events)
        .owns_stream(service_events)
        .shutdown_on_signal()
        .run(measured, error_policy, ctx)
        .for_each(|result| {
            metrics.controller_result(result.is_ok());
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile error");
            }
            std::future::ready(())
        });
    match &opts.leader {
        None => controller.await,
        Some(lease) => {
            tokio::select! {
                _ = controller => crate::leader::release(&client, lease).await,
                _ = crate::leader::hold(&client, lease) => {
                    anyhow::bail!("lost the leader lease {}/{}: stopping so that another replica leads", lease.namespace, lease.name)
                }
            }
        }
    }
    tracing::info!("mpijob-controller stopped");
    Ok(())
}

/// `reconcile`, timed, its errors counted by kind.
async fn measured(job: Arc<MPIJob>, ctx: Arc<Context>) -> crate::error::Result<Action> {
    let start = Instant::now();
    let result = reconcile(job, ctx.clone()).await;
    ctx.metrics
        .reconciled(start.elapsed(), result.as_ref().err());
    result
}
