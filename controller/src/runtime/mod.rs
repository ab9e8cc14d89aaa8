//! Wiring: one watch per kind, shared by the controller's triggers and the
//! caches the reconcilers read from; one controller per served API, under
//! leader election, with health and metrics beside them.

pub mod discovery;
pub mod health;
pub mod leader;
pub mod throttle;

pub use discovery::{choose_apis, Served};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{controller, reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use mpijob_api::contract::labels;
use mpijob_api::MPIJob;

use crate::core::context::{Config, Context, Synced};
use crate::core::error::Result;
use crate::core::events::error_policy;
use crate::core::metrics::Metrics;
use crate::gang::podgroups::{PodGroups, Scheduling};
use crate::gang::GangScheduling;
use crate::kubeflow::{self, KubeflowContext};
use crate::t9k::{self, T9kContext};
use health::Health;

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
    pub leader: Option<leader::LeaseConfig>,
    /// `--gang-scheduling`: the gang scheduler of the jobs that do not
    /// name the T9k scheduler; `None` creates no PodGroup for them.
    pub gang_scheduling: Option<GangScheduling>,
    /// The cluster's DNS domain (`--cluster-domain`), appended to the
    /// hosts of Kubeflow jobs' hostfiles; `None` leaves them at `….svc`.
    pub cluster_domain: Option<String>,
    /// The APIs to serve; `None` serves each whose CRD is installed.
    pub apis: Option<Vec<Served>>,
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

/// A cache of `K` filtered by `label`, and the stream of its changes for a
/// controller's triggers. managedFields are dropped: nothing reads them,
/// and they are a large share of each object.
fn cache<K>(
    client: &Client,
    ns: &Option<String>,
    label: &str,
    on_event: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector(
        writer,
        watcher(
            api::<K>(client, ns),
            watcher::Config::default().labels(label),
        )
        .modify(|o| o.meta_mut().managed_fields = None)
        .map(move |e| {
            if let Ok(e) = &e {
                on_event(e);
            }
            e
        }),
    )
    .default_backoff()
    .touched_objects();
    (store, stream)
}

/// Run the operator until SIGTERM or Ctrl-C.
pub async fn run(client: Client, config: Config, opts: Options) -> anyhow::Result<()> {
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = opts.health_addr {
        let health = health.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = health::serve(addr, health, metrics).await {
                tracing::error!(%addr, error = %e, "health endpoint failed");
            }
        });
    }
    let apis = choose_apis(&client, opts.apis.as_deref()).await?;
    // A leader that loses its lease (it could not renew in time: the API
    // server was away, say) stops acting and stands by to lead again, in
    // this process: its restart would gain nothing, and cost the caches.
    loop {
        if let Some(lease) = &opts.leader {
            health.standby.store(true, Ordering::Relaxed);
            tokio::select! {
                _ = leader::acquire(&client, lease) => {}
                _ = shutdown_signal() => break,
            }
            health.standby.store(false, Ordering::Relaxed);
        }
        metrics.set_leader(true);
        match serve(&client, &config, &opts, &apis, &health, &metrics).await {
            Ended::Shutdown => break,
            Ended::LostLease => {
                metrics.set_leader(false);
                health.ready.store(false, Ordering::Relaxed);
                tracing::warn!("lost the leader lease: stopped acting; standing by to lead again");
            }
        }
    }
    tracing::info!("mpijob-controller stopped");
    Ok(())
}

/// How one term of serving ended.
enum Ended {
    /// SIGTERM or Ctrl-C.
    Shutdown,
    /// The lease was lost: another replica may lead now.
    LostLease,
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Serve the APIs until shutdown or, with leader election, until the
/// lease is lost.
async fn serve(
    client: &Client,
    config: &Config,
    opts: &Options,
    apis: &[Served],
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
) -> Ended {
    let client = client.clone();

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "mpijob-controller".into(),
            instance: Some(opts.instance.clone()),
        },
    );
    let gang = Scheduling {
        flag: opts.gang_scheduling.clone(),
        pod_groups: Arc::new(PodGroups::new(client.clone(), opts.namespace.clone())),
    };
    if let Some(g) = &gang.flag {
        tracing::info!(scheduler = %g.flag(), "gang scheduling: every job that does not name the T9k scheduler gets a PodGroup");
    }
    let context = |label: &str, synced: Synced| {
        // Only the jobs' own children are cached: they carry the API's
        // job-name label. Secrets are watched as metadata only: their key
        // material never reaches the controller.
        let index = Arc::new(crate::core::pods::JobIndex::new(label));
        let (pods, pod_events) = {
            let index = index.clone();
            cache::<Pod>(&client, &opts.namespace, label, move |e| index.apply(e))
        };
        let pods = crate::core::pods::Pods::new(pods, index);
        let (secrets, secret_events) =
            cache::<PartialObjectMeta<Secret>>(&client, &opts.namespace, label, |_| {});
        let (services, service_events) = cache::<Service>(&client, &opts.namespace, label, |_| {});
        let ctx = Context {
            client: client.clone(),
            config: config.clone(),
            recorder: recorder.clone(),
            pods,
            secrets,
            services,
            metrics: metrics.clone(),
            expectations: Default::default(),
            synced,
            large_jobs: Default::default(),
        };
        (ctx, pod_events, secret_events, service_events)
    };
    tracing::info!(
        namespace = opts.namespace.as_deref().unwrap_or("<all>"),
        "mpijob-controller starting"
    );
    // No debounce: a reconcile runs as soon as an event comes. A 50 ms
    // debounce took a burst of child events in one reconcile (3.7 per job
    // instead of 7.6, BENCHMARKS.md) but did not move the controller's
    // time, and it hid the Pending phase of jobs whose pods start at once.
    let tuning = controller::Config::default().debounce(Duration::ZERO);

    let mut running: Vec<futures::future::BoxFuture<'_, ()>> = Vec::new();
    let mut synced: Vec<futures::future::BoxFuture<'_, ()>> = Vec::new();
    if apis.contains(&Served::T9k) {
        let (ready, flag) = Synced::new();
        let (core, pod_events, secret_events, service_events) = context(labels::JOB_NAME, flag);
        let (pods, secrets, services) = (
            core.pods.clone(),
            core.secrets.clone(),
            core.services.clone(),
        );
        let ctx = T9kContext {
            core,
            gang: gang.clone(),
        };
        // One waiter per store (see `Synced`).
        synced.push(Box::pin(async move {
            let _ = tokio::join!(
                pods.wait_until_ready(),
                secrets.wait_until_ready(),
                services.wait_until_ready()
            );
            let _ = ready.send(true);
        }));
        let jobs = api::<MPIJob>(&client, &opts.namespace);
        running.push(Box::pin(
            Controller::new(jobs, watcher::Config::default())
                .with_config(tuning.clone())
                .owns_stream(pod_events)
                .owns_stream(secret_events)
                .owns_stream(service_events)
                .shutdown_on_signal()
                .run(measured(t9k::reconcile), error_policy, Arc::new(ctx))
                .for_each(counted(metrics)),
        ));
    }
    if apis.contains(&Served::Kubeflow) {
        let label = mpijob_api::kubeflow::contract::labels::JOB_NAME;
        let (ready, flag) = Synced::new();
        let (core, pod_events, secret_events, service_events) = context(label, flag);
        let (config_maps, config_map_events) =
            cache::<ConfigMap>(&client, &opts.namespace, label, |_| {});
        let (jobs, job_events) = cache::<Job>(&client, &opts.namespace, label, |_| {});
        let kctx = Arc::new(KubeflowContext {
            core,
            config_maps,
            jobs,
            gang: gang.clone(),
            cluster_domain: opts.cluster_domain.clone(),
        });
        let k = kctx.clone();
        synced.push(Box::pin(async move {
            let c = &k.core;
            let _ = tokio::join!(
                c.pods.wait_until_ready(),
                c.secrets.wait_until_ready(),
                c.services.wait_until_ready(),
                k.config_maps.wait_until_ready(),
                k.jobs.wait_until_ready()
            );
            let _ = ready.send(true);
        }));
        let mpijobs = api::<mpijob_api::kubeflow::MPIJob>(&client, &opts.namespace);
        running.push(Box::pin(
            Controller::new(mpijobs, watcher::Config::default())
                .with_config(tuning.clone())
                // The launcher's pods belong to its Job, not to the MPIJob:
                // map them to the job by label.
                .watches_stream(pod_events, kubeflow_owner)
                .owns_stream(secret_events)
                .owns_stream(service_events)
                .owns_stream(config_map_events)
                .owns_stream(job_events)
                .shutdown_on_signal()
                .run(measured(kubeflow::reconcile), error_policy, kctx)
                .for_each(counted(metrics)),
        ));
    }
    {
        let health = health.clone();
        tokio::spawn(async move {
            futures::future::join_all(synced).await;
            health.ready.store(true, Ordering::Relaxed);
            tracing::info!("caches synced; serving");
        });
    }
    let controllers = futures::future::join_all(running);
    match &opts.leader {
        None => {
            controllers.await;
            Ended::Shutdown
        }
        Some(lease) => {
            tokio::select! {
                _ = controllers => {
                    leader::release(&client, lease).await;
                    Ended::Shutdown
                }
                _ = leader::hold(&client, lease) => Ended::LostLease,
            }
        }
    }
}

/// Count each result of a controller's stream.
fn counted<T, E: std::fmt::Display>(
    metrics: &Metrics,
) -> impl FnMut(Result<T, E>) -> std::future::Ready<()> + '_ {
    move |result| {
        metrics.controller_result(result.is_ok());
        if let Err(e) = result {
            tracing::debug!(error = %e, "reconcile error");
        }
        std::future::ready(())
    }
}

/// The Kubeflow MPIJob a pod belongs to, by its job-name label.
fn kubeflow_owner(pod: Pod) -> Option<ObjectRef<mpijob_api::kubeflow::MPIJob>> {
    let name = pod
        .labels()
        .get(mpijob_api::kubeflow::contract::labels::JOB_NAME)?;
    Some(ObjectRef::new(name).within(pod.metadata.namespace.as_deref()?))
}

/// An API's `reconcile`, timed, its errors counted by kind.
fn measured<K, C, Fut>(
    reconcile: impl Fn(Arc<K>, Arc<C>) -> Fut,
) -> impl FnMut(Arc<K>, Arc<C>) -> futures::future::BoxFuture<'static, Result<Action>>
where
    C: AsRef<Context> + Send + Sync + 'static,
    K: Send + Sync + 'static,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    move |job, ctx| {
        let run = reconcile(job, ctx.clone());
        Box::pin(async move {
            let start = Instant::now();
            let result = run.await;
            (*ctx)
                .as_ref()
                .metrics
                .reconciled(start.elapsed(), result.as_ref().err());
            result
        })
    }
}
