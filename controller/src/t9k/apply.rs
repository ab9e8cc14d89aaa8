//! Apply, for a T9k job: its Secret, Service and pods through the core's
//! [`ensure`], the pods the spec no longer asks for pruned, and the
//! workers of a finished job finished.

use std::collections::BTreeMap;

use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use mpijob_api::contract;
use mpijob_api::t9k::v1beta1::CleanUpWorkers;
use mpijob_api::t9k::Resolved;
use serde_json::json;

use super::build::{self, pod, roles, Role};
use super::status::Observed;
use crate::core::apply::{controlled_by, delete_child, ensure, owned_pods, Ensured, MAX_IN_FLIGHT};
use crate::core::context::{Context, Write};
use crate::core::error::Result;
use crate::core::meta::JobMeta;
use crate::gang::Gang;

/// Create the job's Secret, Service and (when `create_pods`) its pods,
/// where missing; the pods join `gang` when it is given. Returns the name clashes found. The Secret and the Service
/// go out together, then all the pods together: two round trips for a new
/// job, however many workers it has.
pub async fn children(
    ctx: &Context,
    job: &Resolved,
    meta: &JobMeta,
    create_pods: bool,
    resumed: bool,
    gang: Option<&Gang>,
) -> Result<Observed> {
    let ns = &meta.namespace;
    let mut conflicts = Vec::new();
    let mut rejected = Vec::new();
    let mut all = true;
    let mut created = false;

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    let secret_name = contract::secret_name(&meta.name);
    let service_name = contract::service_name(&meta.name);
    let comment = format!("mpijob:{ns}/{}", meta.name);
    let (secret, service) = tokio::try_join!(
        ensure(
            ctx,
            &ctx.secrets,
            &secrets,
            "Secret",
            &secret_name,
            meta,
            || {
                // The key is generated only here, when the Secret is first created.
                let key = mpijob_api::sshkey::generate(&comment);
                build::secret::secret(meta, &key, &job.spec.ssh.ssh_auth_mount_path)
            }
        ),
        ensure(
            ctx,
            &ctx.services,
            &services,
            "Service",
            &service_name,
            meta,
            || build::service::service(meta)
        ),
    )?;
    for r in [secret, service] {
        note(r, &mut conflicts, &mut rejected, &mut all, &mut created);
    }

    // Pods would mount someone else's Secret or share their Service: wait
    // until the clash is resolved.
    let create_pods = create_pods && conflicts.is_empty();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let wanted = roles(job.workers);
    if create_pods {
        // At most MAX_IN_FLIGHT creates at once: a 10001-pod job must not
        // open 10001 requests.
        let results: Vec<_> = stream::iter(wanted.clone())
            .map(|role| {
                let name = role.pod_name(&meta.name);
                let pods = &pods;
                async move {
                    ensure(ctx, &*ctx.pods, pods, "Pod", &name, meta, || {
                        let mut p = pod::pod(job, meta, role, &ctx.config, resumed);
                        if let (Some(g), Some(spec)) = (gang, p.spec.as_mut()) {
                            crate::gang::decorate(g, &mut p.metadata, spec);
                        }
                        p
                    })
                    .await
                }
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .try_collect()
            .await?;
        for r in results {
            note(r, &mut conflicts, &mut rejected, &mut all, &mut created);
        }
    } else {
        all &= wanted.iter().all(|r| {
            ctx.pods
                .get(&ObjectRef::new(&r.pod_name(&meta.name)).within(ns))
                .is_some()
        });
    }

    prune(ctx, job, meta, &pods).await?;
    Ok(Observed {
        conflicts,
        all_created: all,
        created_any: created,
        rejected,
        ..Observed::default()
    })
}

/// Delete every pod of the job that is not already going, gracefully:
/// pausing, or switching debug mode on or off. The Secret and the
/// Service stay.
pub async fn delete_pods(ctx: &Context, meta: &JobMeta) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    for pod in owned_pods(&ctx.pods, meta) {
        if pod.metadata.deletion_timestamp.is_none() {
            ctx.wrote(Write::Cleanup);
            delete_child(&api, &pod.name_any()).await?;
        }
    }
    Ok(())
}

fn note(
    r: Ensured,
    conflicts: &mut Vec<String>,
    rejected: &mut Vec<String>,
    all: &mut bool,
    created: &mut bool,
) {
    match r {
        Ensured::Conflict(msg) => {
            conflicts.push(msg);
            *all = false;
        }
        Ensured::Rejected(msg) => {
            rejected.push(msg);
            *all = false;
        }
        Ensured::Created | Ensured::Expected => *created = true,
        Ensured::Present => {}
    }
}

/// Pods of this job that the spec no longer asks for (fewer replicas).
async fn prune(ctx: &Context, job: &Resolved, meta: &JobMeta, api: &Api<Pod>) -> Result<()> {
    let wanted = roles(job.workers);
    for pod in owned_pods(&ctx.pods, meta) {
        let role = Role::of_labels(pod.labels());
        if role.is_some_and(|r| !wanted.contains(&r)) && pod.metadata.deletion_timestamp.is_none() {
            ctx.wrote(Write::Cleanup);
            delete_child(api, &pod.name_any()).await?;
        }
    }
    Ok(())
}

fn is_owned(p: &Pod, meta: &JobMeta) -> bool {
    p.metadata.namespace.as_deref() == Some(meta.namespace.as_str())
        && p.labels().get(contract::labels::JOB_NAME) == Some(&meta.name)
        && controlled_by(p, meta)
}

/// The pod named `name` in the cache, if this job owns it.
pub fn owned_pod(store: &Store<Pod>, meta: &JobMeta, name: &str) -> Option<Arc<Pod>> {
    store
        .get(&ObjectRef::new(name).within(&meta.namespace))
        .filter(|p| is_owned(p, meta))
}

/// The job is over: workers must not run sshd forever. Workers the policy
/// deletes are deleted; every other running worker is told to finish
/// through the finish annotation.
pub async fn finish_workers(ctx: &Context, meta: &JobMeta, policy: &CleanUpWorkers) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    // One write per worker, MAX_IN_FLIGHT at a time.
    stream::iter(owned_pods(&ctx.pods, meta))
        .map(|pod| finish_worker(ctx, &api, pod, policy))
        .buffer_unordered(MAX_IN_FLIGHT)
        .try_collect::<()>()
        .await
}

/// [`finish_workers`] for one pod: delete it, tell it to finish, or leave
/// it.
async fn finish_worker(
    ctx: &Context,
    api: &Api<Pod>,
    pod: Arc<Pod>,
    policy: &CleanUpWorkers,
) -> Result<()> {
    if !matches!(Role::of_labels(pod.labels()), Some(Role::Worker(_)))
        || pod.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let ended = matches!(phase, "Succeeded" | "Failed");
    let delete = match policy {
        CleanUpWorkers::All => true,
        CleanUpWorkers::Unfinished => !ended,
        CleanUpWorkers::None | CleanUpWorkers::Invalid(_) => false,
    };
    if delete {
        ctx.wrote(Write::Cleanup);
        delete_child(api, &pod.name_any()).await?;
    } else if !ended && !pod.annotations().contains_key(contract::FINISH_ANNOTATION) {
        ctx.wrote(Write::Cleanup);
        let patch = json!({"metadata": {"annotations": BTreeMap::from([(contract::FINISH_ANNOTATION, "true")])}});
        api.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(())
}
