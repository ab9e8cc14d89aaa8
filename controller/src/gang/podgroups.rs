//! The PodGroups: a cache per kind, started the first time a job needs that
//! kind, and the writes that create, update and delete a job's PodGroup.
//!
//! A kind whose CRD is not installed has no cache: its jobs are told so in
//! their status, and it is looked for again at most every
//! [`PodGroups::RECHECK`], so that installing the scheduler later needs no
//! restart of the controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{Gang, GangScheduling, Kind, State};
use crate::core::apply::{controlled_by, delete_child};
use crate::core::context::{Context, Write};
use crate::core::discovery::serves;
use crate::core::error::{Error, Result};
use crate::core::meta::JobMeta;

/// An API's gang settings: `--gang-scheduling`, and the PodGroup caches
/// that both APIs share.
#[derive(Clone)]
pub struct Scheduling {
    /// The gang scheduler of the jobs that do not name the T9k scheduler;
    /// `None` creates no PodGroup for them.
    pub flag: Option<GangScheduling>,
    pub pod_groups: Arc<PodGroups>,
}

/// One kind's cache, or when its CRD was last found missing.
enum Slot {
    Missing(Instant),
    Watching(Store<DynamicObject>),
}

/// The PodGroup caches, shared by both APIs' reconcilers.
pub struct PodGroups {
    client: Client,
    namespace: Option<String>,
    slots: Mutex<HashMap<Kind, Slot>>,
}

/// What ensuring a job's PodGroup found.
#[derive(Clone, Debug, PartialEq)]
pub enum Ensured {
    /// There, or created now: the job's gang state is [`State::Ready`].
    Ready,
    /// Created by this reconcile.
    Created,
    /// The CRD is not installed.
    Missing(String),
    /// Someone else's PodGroup has the name.
    Conflict(String),
}

impl Ensured {
    /// The gang state for the status.
    pub fn state(&self, gang: &Gang) -> Option<State> {
        match self {
            Ensured::Ready | Ensured::Created => Some(State::Ready(gang.clone())),
            Ensured::Missing(m) => Some(State::Missing(m.clone())),
            Ensured::Conflict(_) => None,
        }
    }
}

impl PodGroups {
    /// How long a missing CRD is believed missing.
    pub const RECHECK: Duration = Duration::from_secs(10);
    /// How long the first list of a kind may take.
    const SYNC: Duration = Duration::from_secs(60);

    pub fn new(client: Client, namespace: Option<String>) -> PodGroups {
        PodGroups {
            client,
            namespace,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The cache of `kind`, started and synced on first use; `None` when
    /// its CRD is not installed.
    async fn store(&self, kind: Kind) -> Result<Option<Store<DynamicObject>>> {
        let mut slots = self.slots.lock().await;
        match slots.get(&kind) {
            Some(Slot::Watching(store)) => return Ok(Some(store.clone())),
            Some(Slot::Missing(at)) if at.elapsed() < Self::RECHECK => return Ok(None),
            _ => {}
        }
        if !self.installed(kind).await? {
            tracing::warn!(crd = %kind.crd(), "PodGroup CRD not installed");
            slots.insert(kind, Slot::Missing(Instant::now()));
            return Ok(None);
        }
        let ar = kind.resource();
        let api: Api<DynamicObject> = match &self.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        };
        let writer = reflector::store::Writer::new(ar);
        let store = writer.as_reader();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        let crd = kind.crd();
        tokio::spawn(async move {
            stream
                .for_each(|r| {
                    if let Err(e) = r {
                        tracing::warn!(crd = %crd, error = %e, "watching PodGroups");
                    }
                    std::future::ready(())
                })
                .await;
        });
        // One waiter: the lock is held (see `context::Synced` on why).
        tokio::time::timeout(Self::SYNC, store.wait_until_ready())
            .await
            .map_err(|_| Error::PodGroupsNotSynced(kind.crd()))?
            .map_err(|_| Error::PodGroupsNotSynced(kind.crd()))?;
        tracing::info!(crd = %kind.crd(), "watching PodGroups");
        slots.insert(kind, Slot::Watching(store.clone()));
        Ok(Some(store))
    }

    /// Whether the API server serves `podgroups` of `kind`.
    async fn installed(&self, kind: Kind) -> Result<bool> {
        Ok(serves(&self.client, &kind.api_version(), "podgroups").await?)
    }

    /// Forget that `kind` was there (its CRD went away under us).
    async fn lost(&self, kind: Kind) {
        self.slots
            .lock()
            .await
            .insert(kind, Slot::Missing(Instant::now()));
    }

    /// The values of the priority classes `names`; a class that cannot be
    /// read counts as 0, as mpi-operator counts it.
    pub async fn priorities(&self, names: &[String]) -> BTreeMap<String, i32> {
        let api: Api<PriorityClass> = Api::all(self.client.clone());
        let mut out = BTreeMap::new();
        for name in names {
            match api.get_opt(name).await {
                Ok(Some(pc)) => {
                    out.insert(name.clone(), pc.value);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(priority_class = %name, error = %e, "ignoring the priority class")
                }
            }
        }
        out
    }
}

impl Scheduling {
    /// Create the job's PodGroup if it is missing, and bring the fields this
    /// controller sets in line with `gang` if they differ.
    pub async fn ensure(&self, ctx: &Context, meta: &JobMeta, gang: &Gang) -> Result<Ensured> {
        let kind = gang.kind;
        let Some(store) = self.pod_groups.store(kind).await? else {
            return Ok(Ensured::Missing(super::missing(gang)));
        };
        let ns = &meta.namespace;
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &kind.resource());
        let key = ObjectRef::new_with(&gang.name, kind.resource()).within(ns);
        let expectation = format!("PodGroup.{}", kind.group());
        if let Some(existing) = store.get(&key) {
            ctx.expectations.observed(&expectation, ns, &gang.name);
            if !controlled_by(&*existing, meta) {
                return Ok(Ensured::Conflict(conflict(gang)));
            }
            let have = existing.data.get("spec").cloned().unwrap_or(Value::Null);
            let patch = spec_patch(kind, &have, &gang.spec);
            if !patch.as_object().is_some_and(|m| m.is_empty()) {
                ctx.wrote(Write::Create);
                api.patch(
                    &gang.name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({ "spec": patch })),
                )
                .await?;
            }
            return Ok(Ensured::Ready);
        }
        if ctx.expectations.pending(&expectation, ns, &gang.name) {
            return Ok(Ensured::Ready);
        }
        let mut obj = DynamicObject::new(&gang.name, &kind.resource()).within(ns);
        obj.metadata.owner_references = Some(vec![meta.owner.clone()]);
        obj.metadata.labels = Some(meta.selector());
        obj.data = json!({ "spec": gang.spec });
        ctx.wrote(Write::Create);
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {
                ctx.expectations.created(&expectation, ns, &gang.name);
                Ok(Ensured::Created)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.pod_groups.lost(kind).await;
                Ok(Ensured::Missing(super::missing(gang)))
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                match api.get_opt(&gang.name).await? {
                    Some(o) if controlled_by(&o, meta) => Ok(Ensured::Ready),
                    Some(_) => Ok(Ensured::Conflict(conflict(gang))),
                    None => Ok(Ensured::Ready),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Delete the job's PodGroup of `kind`, if it is there and ours.
    pub async fn delete(&self, ctx: &Context, meta: &JobMeta, kind: Kind) -> Result<()> {
        let store = {
            let slots = self.pod_groups.slots.lock().await;
            match slots.get(&kind) {
                Some(Slot::Watching(store)) => store.clone(),
                _ => return Ok(()),
            }
        };
        let key = ObjectRef::new_with(&meta.name, kind.resource()).within(&meta.namespace);
        let Some(existing) = store.get(&key) else {
            return Ok(());
        };
        if !controlled_by(&*existing, meta) || existing.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &meta.namespace, &kind.resource());
        ctx.wrote(Write::Cleanup);
        tracing::info!(job = %meta.name, namespace = %meta.namespace, podgroup = %existing.name_any(), "deleting the PodGroup");
        delete_child(&api, &meta.name).await
    }

    /// A T9k job's gang (see [`super::for_t9k`]), with the priority classes
    /// it needs read from the cluster.
    pub async fn t9k_gang(
        &self,
        job: &mpijob_api::MPIJob,
        r: &mpijob_api::t9k::Resolved,
    ) -> Option<Gang> {
        let flag = self.flag.as_ref();
        let names = super::t9k_priority_classes(r, flag);
        let priorities = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.pod_groups.priorities(&names).await
        };
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        super::for_t9k(&job.name_any(), &annotations, r, flag, &priorities)
    }

    /// A Kubeflow job's gang (see [`super::for_kubeflow`]), likewise.
    pub async fn kubeflow_gang(
        &self,
        job: &mpijob_api::kubeflow::MPIJob,
        r: &mpijob_api::kubeflow::Resolved,
    ) -> Option<Gang> {
        let flag = self.flag.as_ref()?;
        let names = super::kubeflow_members(r).priority_classes();
        let priorities = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.pod_groups.priorities(&names).await
        };
        let annotations = job.metadata.annotations.clone().unwrap_or_default();
        super::for_kubeflow(&job.name_any(), &annotations, r, Some(flag), &priorities)
    }
}

fn conflict(gang: &Gang) -> String {
    format!(
        "PodGroup {} ({}) already exists and is not owned by this MPIJob: delete or rename it, or rename the job",
        gang.name,
        gang.kind.api_version()
    )
}

/// The merge patch that makes the managed fields of `have` those of
/// `want`: changed or new fields, and `null` for managed fields that
/// `want` no longer sets. Empty when nothing differs.
pub fn spec_patch(kind: Kind, have: &Value, want: &serde_json::Map<String, Value>) -> Value {
    let mut out = serde_json::Map::new();
    for field in kind.managed_fields() {
        let (h, w) = (have.get(*field), want.get(*field));
        if h != w {
            out.insert((*field).into(), w.cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}
