//! Apply, for every API: create what is missing, never touch what is not
//! ours, and delete what goes.
//!
//! Reads come from the watch caches; only missing objects are written, so a
//! reconcile of an up-to-date job makes no write at all.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::context::{Context, Write};
use super::error::Result;
use super::meta::JobMeta;
use super::pods::Pods;

/// Whether an object with a child's name is ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensured {
    Present,
    Created,
    /// Created by an earlier reconcile, not in the caches yet.
    Expected,
    /// The API server refused it as invalid: the message says why.
    Rejected(String),
    /// Someone else's object has the name: the message says whose.
    Conflict(String),
}

/// How many writes of one job's pods (creates, finish patches, deletes)
/// may be in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// Create `name` unless the cache (`store`, which may hold only metadata)
/// or a recent create says it exists; report whose it is.
pub async fn ensure<K, S>(
    ctx: &Context,
    store: &Store<S>,
    api: &Api<K>,
    kind: &str,
    name: &str,
    meta: &JobMeta,
    build: impl FnOnce() -> K,
) -> Result<Ensured>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    S: Resource<DynamicType = ()> + Clone,
{
    let ns = &meta.namespace;
    let key = ObjectRef::<S>::new(name).within(ns);
    if let Some(existing) = store.get(&key) {
        ctx.expectations.observed(kind, ns, name);
        return Ok(ownership(&*existing, kind, name, meta));
    }
    if ctx.expectations.pending(kind, ns, name) {
        // Created a moment ago; its watch event is on its way.
        return Ok(Ensured::Expected);
    }
    let obj = build();
    ctx.wrote(Write::Create);
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {
            ctx.expectations.created(kind, ns, name);
            Ok(Ensured::Created)
        }
        // E.g. a template the API server's pod validation refuses: retrying
        // cannot help, so the job fails with the server's reason.
        Err(kube::Error::Api(s)) if s.is_invalid() => Ok(Ensured::Rejected(format!(
            "the API server rejected {kind} {name}: {}",
            s.message
        ))),
        // Only its metadata is read: a clashing Secret's data is none of
        // our business.
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            match api.get_metadata_opt(name).await? {
                Some(existing) => Ok(ownership(&existing, kind, name, meta)),
                // Deleted in between: the next reconcile creates it.
                None => Ok(Ensured::Present),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `obj` is controlled by the job (its controller owner reference).
pub fn controlled_by<K: Resource>(obj: &K, meta: &JobMeta) -> bool {
    obj.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == meta.uid)
}

fn ownership<K: Resource>(obj: &K, kind: &str, name: &str, meta: &JobMeta) -> Ensured {
    if controlled_by(obj, meta) {
        Ensured::Present
    } else {
        Ensured::Conflict(format!(
            "{kind} {name} already exists and is not owned by this MPIJob: delete or rename it, or rename the job"
        ))
    }
}

/// The pods in the cache that carry the job's label and that it controls.
pub fn owned_pods(pods: &Pods, meta: &JobMeta) -> Vec<Arc<Pod>> {
    pods.of_job(&meta.namespace, &meta.name)
        .into_iter()
        .filter(|p| controlled_by(&**p, meta))
        .collect()
}

/// Delete `name` (its dependents in the background); already gone is fine.
pub async fn delete_child<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
