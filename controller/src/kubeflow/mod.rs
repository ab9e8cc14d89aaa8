//! Kubeflow's `kubeflow.org/v2beta1` MPIJob, reconciled as mpi-operator
//! does (see `../shared/ref/kubeflow-v2beta1.md`), from the same building
//! blocks as the T9k API: the caches, `apply::ensure`, the expectations.
//!
//! One reconcile: skip checks (managedBy, deletion, validation) → Created →
//! clean-up of a finished job → Service, ConfigMap, Secret → workers →
//! launcher Job → suspension → status. `build` and `status` are pure.

pub mod build;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use mpijob_api::contract;
use mpijob_api::kubeflow::contract::{self as kf, labels};
use mpijob_api::kubeflow::resolve::{self, CleanPodPolicy, LauncherCreationPolicy, Manager};
use mpijob_api::kubeflow::{JobStatus, MPIJob, Resolved};
use serde_json::json;

use crate::core::apply::{controlled_by, delete_child, ensure, Ensured};
use crate::core::context::{Context, Write, COMPACT_ABOVE};
use crate::core::error::{Error, Result};
use crate::core::events::event;
use crate::core::meta::JobMeta;
use crate::core::status as status_writer;
use crate::gang::{self, podgroups};
use build::Input;
use status::{reason, Count, Note, Seen};

/// What the Kubeflow reconciler reads: the shared context (its caches
/// hold the children labelled with Kubeflow's job-name label), the two
/// kinds only this API creates, and its settings.
pub struct KubeflowContext {
    pub core: Context,
    pub config_maps: Store<ConfigMap>,
    pub jobs: Store<Job>,
    pub gang: podgroups::Scheduling,
    /// The cluster's DNS domain (`--cluster-domain`), appended to the
    /// hosts of the hostfile; `None` leaves them at `….svc`.
    pub cluster_domain: Option<String>,
}

impl AsRef<Context> for KubeflowContext {
    fn as_ref(&self) -> &Context {
        &self.core
    }
}

/// Bring the cluster in line with one Kubeflow MPIJob, and its status in
/// line with the cluster.
pub async fn reconcile(job: Arc<MPIJob>, kctx: Arc<KubeflowContext>) -> Result<Action> {
    let ctx = &kctx.core;
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ctx.synced.wait().await?;
    let meta = JobMeta::of(&*job, labels::JOB_NAME)?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    // managedBy first, as mpi-operator does: a job another controller runs
    // (Kueue's MultiKueue) is left entirely alone.
    match resolve::manager(&job.spec) {
        Ok(Manager::Other(who)) => {
            tracing::debug!(job = %meta.name, namespace = %meta.namespace, managed_by = %who, "left to its controller");
            return Ok(Action::await_change());
        }
        Ok(Manager::Us) => {}
        Err(_) => {} // reported with the other validation errors
    }
    let r = match resolve::resolve(&job) {
        Ok(r) => r,
        Err(errors) => {
            // As mpi-operator: a Warning event, no status, no retry until
            // the job changes.
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let note = format!("Found validation errors: {}", list.join("; "));
            event(
                ctx,
                &*job,
                EventType::Warning,
                reason::VALIDATION_ERROR,
                &note,
            )
            .await;
            return Ok(Action::await_change());
        }
    };

    // A large job is reconciled at most once a second (see the T9k
    // reconcile): the changes of its pods in between are taken together.
    if r.workers() as usize > COMPACT_ABOVE {
        if let Some(left) = ctx.large_jobs.wait(&meta) {
            return Ok(Action::requeue(left));
        }
    }
    let gang = kctx.gang.kubeflow_gang(&job, &r).await;
    let prev = job.status.clone().unwrap_or_default();
    let mut s = prev.clone();
    let mut notes = Vec::new();
    notes.extend(status::created(&mut s, &meta.name, &meta.namespace, &now));

    let input = Input {
        meta: &meta,
        job: &r,
        cluster_domain: kctx.cluster_domain.as_deref(),
    };
    let launcher_name = contract::launcher_name(&meta.name);
    let launcher = kctx
        .jobs
        .get(&ObjectRef::new(&launcher_name).within(&meta.namespace))
        .filter(|j| controlled_by(&**j, &meta));

    if s.is_finished() && s.completion_time.is_some() {
        // Finished: apply the clean-up policy, and nothing else.
        if r.clean_pod_policy != CleanPodPolicy::None {
            delete_workers(ctx, &meta, r.clean_pod_policy == CleanPodPolicy::Running).await?;
            // The PodGroup goes with the workers, as in mpi-operator.
            if let Some(g) = &gang {
                kctx.gang.delete(ctx, &meta, g.kind).await?;
            }
            if let Some(w) = s
                .replica_statuses
                .get_mut(mpijob_api::kubeflow::v2beta1::replica_type::WORKER)
            {
                w.active = 0;
            }
        }
        finish(ctx, &job, &meta, &prev, &s, notes).await?;
        return Ok(Action::await_change());
    }
    if s.start_time.is_none() && !r.suspend {
        s.start_time = Some(now.clone());
    }

    let finished_launcher = launcher.as_deref().is_some_and(job_finished);
    let mut requeue = None;
    let mut gang_state = None;
    if !finished_launcher {
        let (problems, created, state) = children(&kctx, &r, input, gang.as_ref()).await?;
        if matches!(state, Some(gang::State::Missing(_))) {
            // No watch tells when the CRD is installed: look again.
            requeue = Some(podgroups::PodGroups::RECHECK + Duration::from_secs(5));
        }
        gang_state = state;
        if !problems.is_empty() {
            for (reason, message) in &problems {
                event(ctx, &*job, EventType::Warning, reason, message).await;
            }
            // Someone else's object, or a template the server refuses: look
            // again later; no watch tells us when it changes.
            requeue = Some(Duration::from_secs(30));
        } else if created {
            restart_policy_warning(ctx, &job, &r).await;
        }
    }
    if r.suspend {
        if let Some(l) = launcher.as_deref().filter(|l| !job_finished(l)) {
            // A suspended job has no launcher running. Deleting the Job
            // (rather than suspending it) works on every Kubernetes version,
            // and on resume the launcher is created afresh by its policy,
            // so WaitForWorkersReady waits again (mpi-operator #615).
            delete_launcher(ctx, &meta, l).await?;
        }
        delete_workers(ctx, &meta, r.clean_pod_policy == CleanPodPolicy::Running).await?;
        if let Some(g) = &gang {
            kctx.gang.delete(ctx, &meta, g.kind).await?;
        }
    }
    notes.extend(status::suspension(&mut s, r.suspend, &now));

    let all_pods = ctx.pods.of_job(&meta.namespace, &meta.name);
    let launcher_pods: Vec<&Pod> = all_pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| role(p) == Some(labels::ROLE_LAUNCHER))
        .collect();
    let worker_pods: Vec<&Pod> = if finished_launcher || r.suspend {
        Vec::new()
    } else {
        all_pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| role(p) == Some(labels::ROLE_WORKER) && controlled_by(*p, &meta))
            .collect()
    };
    let was_running = s.is_true(mpijob_api::kubeflow::v2beta1::condition::RUNNING);
    let seen = Seen {
        name: &meta.name,
        namespace: &meta.namespace,
        suspended: r.suspend,
        launcher: if r.suspend { None } else { launcher.as_deref() },
        launcher_pods: &launcher_pods,
        worker_pods: &worker_pods,
    };
    notes.extend(status::update(&mut s, &seen, &now));
    if let Some(state) = &gang_state {
        let live: Vec<&Pod> = worker_pods.iter().chain(&launcher_pods).copied().collect();
        notes.extend(status::gang(&mut s, state, &live, &now));
    }
    if !was_running && s.is_true(mpijob_api::kubeflow::v2beta1::condition::RUNNING) {
        if let Some(start) = &s.start_time {
            ctx.metrics.all_running("kubeflow", start, &now);
        }
    }
    if let Some(l) = &launcher {
        ctx.metrics
            .kubeflow_job_info(&l.name_any(), &meta.namespace);
    }
    finish(ctx, &job, &meta, &prev, &s, notes).await?;
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Write the status if it changed, emit the events, then count.
async fn finish(
    ctx: &Context,
    job: &MPIJob,
    meta: &JobMeta,
    prev: &JobStatus,
    next: &JobStatus,
    notes: Vec<Note>,
) -> Result<()> {
    let counts: Vec<Count> = notes.iter().filter_map(|n| n.counts).collect();
    let events = notes.into_iter().map(Note::event).collect();
    status_writer::write(ctx, job, meta, Some(prev), next, events).await?;
    for c in counts {
        match c {
            Count::Created => ctx.metrics.kubeflow_created(),
            Count::Succeeded => ctx.metrics.kubeflow_succeeded(),
            Count::Failed => ctx.metrics.kubeflow_failed(),
        }
    }
    Ok(())
}

/// Ensure the Service, ConfigMap and Secret, then (unless suspended) the
/// workers, then the launcher Job when its policy allows. Returns the
/// problems to report (event reason and message) and whether anything was
/// created.
async fn children(
    kctx: &KubeflowContext,
    r: &Resolved,
    i: Input<'_>,
    gang: Option<&gang::Gang>,
) -> Result<(Vec<(String, String)>, bool, Option<gang::State>)> {
    let ctx = &kctx.core;
    let meta = i.meta;
    let ns = &meta.namespace;
    let mut found = Found::default();

    let running: Vec<String> = ctx
        .pods
        .of_job(ns, &meta.name)
        .iter()
        .filter(|p| role(p) == Some(labels::ROLE_WORKER) && controlled_by(&***p, meta))
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| p.name_any())
        .collect();
    let service_name = contract::service_name(&meta.name);
    let cm_name = kf::config_map_name(&meta.name);
    let secret_name = contract::secret_name(&meta.name);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let comment = format!("mpijob:{ns}/{}", meta.name);
    let (svc, cm, secret) = tokio::try_join!(
        ensure(
            ctx,
            &ctx.services,
            &services,
            "Service",
            &service_name,
            meta,
            || build::service(i)
        ),
        ensure(
            ctx,
            &kctx.config_maps,
            &config_maps,
            "ConfigMap",
            &cm_name,
            meta,
            || build::config_map(i, &running)
        ),
        ensure(
            ctx,
            &ctx.secrets,
            &secrets,
            "Secret",
            &secret_name,
            meta,
            || {
                let key = mpijob_api::sshkey::generate(&comment);
                build::secret(i, &key)
            }
        ),
    )?;
    found.note("Service", &service_name, svc);
    found.note("ConfigMap", &cm_name, cm.clone());
    found.note("Secret", &secret_name, secret);
    if cm == Ensured::Present {
        // The hostfile follows the spec, discover_hosts.sh the running workers.
        let want = build::config_data(i, &running);
        let have = kctx
            .config_maps
            .get(&ObjectRef::new(&cm_name).within(ns))
            .and_then(|c| c.data.clone())
            .unwrap_or_default();
        if have != want {
            ctx.wrote(Write::Create);
            config_maps
                .patch(
                    &cm_name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"data": want})),
                )
                .await?;
        }
    }
    if !found.problems.is_empty() {
        // Pods would share someone else's Service or mount their Secret.
        return Ok((found.problems, found.created, None));
    }

    // The PodGroup before the pods, so that the gang scheduler knows the
    // group when it sees them; no pods while its CRD is missing.
    let mut gang_state = None;
    if let Some(g) = gang.filter(|_| !r.suspend) {
        let ensured = kctx.gang.ensure(ctx, meta, g).await?;
        gang_state = ensured.state(g);
        match ensured {
            podgroups::Ensured::Missing(_) => {
                return Ok((found.problems, found.created, gang_state))
            }
            podgroups::Ensured::Conflict(c) => {
                found
                    .problems
                    .push((reason::RESOURCE_EXISTS.to_string(), c));
                return Ok((found.problems, found.created, None));
            }
            podgroups::Ensured::Ready | podgroups::Ensured::Created => {}
        }
    }

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    if !r.suspend {
        let workers = futures::future::try_join_all((0..r.workers()).map(|index| {
            let name = contract::worker_name(&meta.name, index);
            let pods = &pods;
            async move {
                let e = ensure(ctx, &*ctx.pods, pods, "Pod", &name, meta, || {
                    let mut p = build::worker(i, &ctx.config, index);
                    if let (Some(g), Some(spec)) = (gang, p.spec.as_mut()) {
                        gang::decorate(g, &mut p.metadata, spec);
                    }
                    p
                })
                .await?;
                Ok::<_, Error>((name, e))
            }
        }))
        .await?;
        for (name, e) in workers {
            found.note("Pod", &name, e);
        }
        prune_workers(ctx, meta, r.workers()).await?;
    }

    let launcher_name = contract::launcher_name(&meta.name);
    let exists = kctx
        .jobs
        .get(&ObjectRef::new(&launcher_name).within(ns))
        .is_some()
        || ctx.expectations.pending("Job", ns, &launcher_name);
    if !r.suspend && found.problems.is_empty() && (exists || launcher_may_start(ctx, meta, r)) {
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
        let e = ensure(ctx, &kctx.jobs, &jobs, "Job", &launcher_name, meta, || {
            let mut job = build::launcher(i, &ctx.config);
            if let (Some(g), Some(t)) = (gang, job.spec.as_mut().map(|s| &mut s.template)) {
                let meta = t.metadata.get_or_insert_with(Default::default);
                gang::decorate(g, meta, t.spec.get_or_insert_with(Default::default));
            }
            job
        })
        .await?;
        found.note("Job", &launcher_name, e);
    }
    Ok((found.problems, found.created, gang_state))
}

/// What ensuring the children found.
#[derive(Default)]
struct Found {
    /// Event reason and message of each problem.
    problems: Vec<(String, String)>,
    created: bool,
}

impl Found {
    fn note(&mut self, kind: &str, name: &str, e: Ensured) {
        match e {
            Ensured::Conflict(_) => self.problems.push((
                reason::RESOURCE_EXISTS.to_string(),
                format!("Resource {name:?} of Kind {kind:?} already exists and is not managed by MPIJob: delete or rename it, or rename the job"),
            )),
            Ensured::Rejected(msg) => self.problems.push((
                reason::FAILED.to_string(),
                format!("launcher/worker pod created failed: {msg}"),
            )),
            Ensured::Created | Ensured::Expected => self.created = true,
            Ensured::Present => {}
        }
    }
}

/// `AtStartup`: at once. `WaitForWorkersReady`: once every worker pod
/// exists and is Ready.
fn launcher_may_start(ctx: &Context, meta: &JobMeta, r: &Resolved) -> bool {
    match r.launcher_creation_policy {
        LauncherCreationPolicy::AtStartup => true,
        LauncherCreationPolicy::WaitForWorkersReady => (0..r.workers()).all(|i| {
            ctx.pods
                .get(&ObjectRef::new(&contract::worker_name(&meta.name, i)).within(&meta.namespace))
                .is_some_and(|p| controlled_by(&*p, meta) && is_ready(&p))
        }),
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A template's own `restartPolicy` is overridden by the replica's, with a
/// Warning, as mpi-operator does.
async fn restart_policy_warning(ctx: &Context, job: &MPIJob, r: &Resolved) {
    let overridden = std::iter::once(&r.launcher)
        .chain(r.worker.as_ref())
        .any(|rep| {
            rep.template_restart_policy()
                .is_some_and(|p| p != rep.restart_policy.as_str())
        });
    if overridden {
        event(
            ctx,
            job,
            EventType::Warning,
            reason::SET_POD_TEMPLATE_RESTART_POLICY,
            "Restart policy in pod template overridden by restart policy in replica spec",
        )
        .await;
    }
}

/// Delete the workers; with `keep_finished`, only those still pending or
/// running.
async fn delete_workers(ctx: &Context, meta: &JobMeta, keep_finished: bool) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    for pod in ctx.pods.of_job(&meta.namespace, &meta.name) {
        if role(&pod) != Some(labels::ROLE_WORKER)
            || !controlled_by(&*pod, meta)
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        if keep_finished && !matches!(phase, "Pending" | "Running") {
            continue;
        }
        ctx.wrote(Write::Cleanup);
        delete_child(&api, &pod.name_any()).await?;
    }
    Ok(())
}

/// Workers beyond `replicas` (the job shrank).
async fn prune_workers(ctx: &Context, meta: &JobMeta, replicas: u32) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    let prefix = format!("{}-worker-", meta.name);
    for pod in ctx.pods.of_job(&meta.namespace, &meta.name) {
        let index = pod
            .name_any()
            .strip_prefix(&prefix)
            .and_then(|i| i.parse::<u32>().ok());
        if role(&pod) == Some(labels::ROLE_WORKER)
            && controlled_by(&*pod, meta)
            && index.is_some_and(|i| i >= replicas)
            && pod.metadata.deletion_timestamp.is_none()
        {
            ctx.wrote(Write::Cleanup);
            delete_child(&api, &pod.name_any()).await?;
        }
    }
    Ok(())
}

/// Delete the launcher Job and, in the background, its pods.
async fn delete_launcher(ctx: &Context, meta: &JobMeta, job: &Job) -> Result<()> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    ctx.wrote(Write::Cleanup);
    delete_child(&api, &job.name_any()).await
}

/// The Job has a Complete or Failed condition.
fn job_finished(job: &Job) -> bool {
    status::job_condition(job, "Complete").is_some()
        || status::job_condition(job, "Failed").is_some()
}

fn role(p: &Pod) -> Option<&str> {
    p.labels().get(labels::JOB_ROLE).map(String::as_str)
}
