//! Gang scheduling, for both APIs: which PodGroup a job gets, how its pods
//! name it, and what the job's status says while they wait. Pure; the
//! PodGroups are written by [`podgroups`].
//!
//! Three PodGroup kinds (see `../shared/ref/t9k-scheduler.md` and "Gang
//! scheduling" in `../shared/ref/kubeflow-v2beta1.md`):
//! - T9k's `scheduler.tensorstack.dev/v1beta1`, for a T9k job's
//!   `spec.scheduler.t9kScheduler`;
//! - Volcano's `scheduling.volcano.sh/v1beta1`, for `--gang-scheduling
//!   volcano`;
//! - scheduler-plugins' `scheduling.x-k8s.io/v1alpha1`, for
//!   `--gang-scheduling <scheduler name>`.
//!
//! The flag applies to both APIs; a T9k job that names the T9k scheduler
//! keeps it. The fields are filled as mpi-operator fills them, with one
//! change: a gang only counts pods that can exist at the same time. A
//! Kubeflow launcher created `WaitForWorkersReady` does not exist until
//! the workers run, so it is not counted, and the workers do not wait for
//! it forever.

pub mod podgroups;
pub mod quantity;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ApiResource;
use mpijob_api::kubeflow::resolve::LauncherCreationPolicy;
use mpijob_api::kubeflow::v2beta1::SchedulingPolicy;
use mpijob_api::kubeflow::Resolved;
use mpijob_api::t9k::Resolved as T9kResolved;
use serde_json::{json, Map, Value};

use quantity::Quantity;

/// The T9k scheduler's name, in `spec.schedulerName`.
pub const T9K_SCHEDULER: &str = "t9k-scheduler";
/// Volcano's scheduler name, and the `--gang-scheduling` value for it.
pub const VOLCANO: &str = "volcano";
/// The job annotation Volcano users name a queue with; the PodGroup's
/// queue when `schedulingPolicy.queue` is not given.
pub const VOLCANO_QUEUE_ANNOTATION: &str = "scheduling.volcano.sh/queue-name";

/// Stable reasons of the gang condition.
pub mod reason {
    /// Every pod of the gang has a node.
    pub const SCHEDULED: &str = "GangScheduled";
    /// Some pods wait for the gang scheduler.
    pub const WAITING: &str = "WaitingForGangScheduler";
    /// The PodGroup's CRD is not installed: no pods are created.
    pub const CRD_MISSING: &str = "PodGroupCRDMissing";
}

/// A PodGroup kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    T9k,
    Volcano,
    SchedulerPlugins,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::T9k, Kind::Volcano, Kind::SchedulerPlugins];

    pub fn group(self) -> &'static str {
        match self {
            Kind::T9k => "scheduler.tensorstack.dev",
            Kind::Volcano => "scheduling.volcano.sh",
            Kind::SchedulerPlugins => "scheduling.x-k8s.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Kind::T9k | Kind::Volcano => "v1beta1",
            Kind::SchedulerPlugins => "v1alpha1",
        }
    }

    pub fn api_version(self) -> String {
        format!("{}/{}", self.group(), self.version())
    }

    /// The CRD's name.
    pub fn crd(self) -> String {
        format!("podgroups.{}", self.group())
    }

    pub fn resource(self) -> ApiResource {
        ApiResource {
            group: self.group().into(),
            version: self.version().into(),
            api_version: self.api_version(),
            kind: "PodGroup".into(),
            plural: "podgroups".into(),
        }
    }

    /// The spec fields this controller sets; the rest are left alone.
    pub fn managed_fields(self) -> &'static [&'static str] {
        match self {
            Kind::T9k => &["minMember", "roles", "queue", "priority"],
            Kind::Volcano => &["minMember", "queue", "priorityClassName", "minResources"],
            Kind::SchedulerPlugins => &["minMember", "scheduleTimeoutSeconds", "minResources"],
        }
    }

    /// What installs the CRD.
    fn installer(self) -> &'static str {
        match self {
            Kind::T9k => "the T9k scheduler",
            Kind::Volcano => "Volcano",
            Kind::SchedulerPlugins => "scheduler-plugins (its coscheduling plugin)",
        }
    }
}

/// `--gang-scheduling`: the gang scheduler of every job that does not
/// name the T9k scheduler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GangScheduling {
    Volcano,
    /// scheduler-plugins' coscheduling, under this scheduler name.
    SchedulerPlugins(String),
}

impl GangScheduling {
    /// Parse the flag's value: `volcano`, or the scheduler name of a
    /// scheduler-plugins profile (mpi-operator's meaning).
    pub fn parse(value: &str) -> Result<GangScheduling, String> {
        let v = value.trim();
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        match v {
            VOLCANO => Ok(GangScheduling::Volcano),
            name if dns_label(name) => Ok(GangScheduling::SchedulerPlugins(name.to_string())),
            _ => Err(format!(
                "{value:?} is not a scheduler name: give volcano, or the schedulerName of a scheduler-plugins profile with coscheduling, e.g. scheduler-plugins-scheduler (lower-case letters, digits, '-' and '.')"
            )),
        }
    }

    /// How the flag reads on the command line.
    pub fn flag(&self) -> String {
        format!("--gang-scheduling {}", self.scheduler())
    }

    fn scheduler(&self) -> &str {
        match self {
            GangScheduling::Volcano => VOLCANO,
            GangScheduling::SchedulerPlugins(name) => name,
        }
    }
}

/// One job's gang: its PodGroup and how its pods name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Gang {
    pub kind: Kind,
    /// The pods' `schedulerName`.
    pub scheduler: String,
    /// The PodGroup's name: the job's.
    pub name: String,
    pub min_member: i32,
    pub queue: Option<String>,
    /// The PodGroup's spec.
    pub spec: Map<String, Value>,
    /// The field or flag that asked for it, for messages.
    pub asked_by: String,
}

/// The pods of a job, as a gang counts them.
#[derive(Clone, Debug)]
pub struct Members<'a> {
    pub launcher: Option<&'a PodSpec>,
    pub worker: Option<&'a PodSpec>,
    pub workers: u32,
    /// The launcher is created only once every worker is Ready: it is not
    /// part of the gang (it joins the group when it comes).
    pub launcher_waits: bool,
}

impl Members<'_> {
    /// Whether the launcher is among the pods that exist at once.
    fn launcher_counted(&self) -> bool {
        !(self.launcher_waits && self.workers > 0)
    }

    /// How many pods can exist at the same time: the largest minimum a
    /// gang can have without waiting for itself.
    pub fn at_once(&self) -> i32 {
        i32::try_from(self.workers).unwrap_or(i32::MAX) + i32::from(self.launcher_counted())
    }

    /// The priority classes whose values decide which pods `minResources`
    /// counts: none when the launcher and the workers name the same one.
    pub fn priority_classes(&self) -> Vec<String> {
        let name = |s: Option<&PodSpec>| s.and_then(|s| s.priority_class_name.clone());
        let (l, w) = (name(self.launcher), name(self.worker));
        if l == w {
            return Vec::new();
        }
        l.into_iter().chain(w).collect()
    }

    /// The resources `min_member` pods need, the higher priority first and
    /// the launcher before the workers at equal priority (mpi-operator's
    /// order). A container's requests count, its limits where it has no
    /// request. `None` when nothing is requested.
    pub fn min_resources(
        &self,
        min_member: i32,
        priorities: &BTreeMap<String, i32>,
    ) -> Option<BTreeMap<String, String>> {
        let priority = |s: &PodSpec| {
            s.priority_class_name
                .as_ref()
                .and_then(|n| priorities.get(n))
                .copied()
                .unwrap_or(0)
        };
        let mut kinds: Vec<(i32, u8, &PodSpec, i64)> = Vec::new();
        if let Some(l) = self.launcher.filter(|_| self.launcher_counted()) {
            kinds.push((priority(l), 0, l, 1));
        }
        if let Some(w) = self.worker {
            kinds.push((priority(w), 1, w, i64::from(self.workers)));
        }
        kinds.sort_by_key(|(p, order, _, _)| (-p, *order));
        let mut left = i64::from(min_member.max(0));
        let mut sum: BTreeMap<String, Quantity> = BTreeMap::new();
        for (_, _, spec, count) in kinds {
            let n = count.min(left);
            left -= n;
            for c in &spec.containers {
                let Some(r) = &c.resources else { continue };
                let mut each: BTreeMap<&String, &str> = BTreeMap::new();
                for (k, v) in r.limits.iter().flatten() {
                    each.insert(k, &v.0);
                }
                for (k, v) in r.requests.iter().flatten() {
                    each.insert(k, &v.0);
                }
                for (k, v) in each {
                    let Some(q) = Quantity::parse(v) else {
                        continue;
                    };
                    let add = q.times(n);
                    let total = sum.get(k).copied().unwrap_or(q.zero_like()).plus(add);
                    sum.insert(k.clone(), total);
                }
            }
        }
        (!sum.is_empty()).then(|| sum.into_iter().map(|(k, v)| (k, v.to_string())).collect())
    }
}

/// The priority classes [`for_t9k`] needs the values of.
pub fn t9k_priority_classes(r: &T9kResolved, flag: Option<&GangScheduling>) -> Vec<String> {
    if flag.is_none() || t9k_scheduler(r).is_some() {
        return Vec::new();
    }
    t9k_members(r, 0).priority_classes()
}

fn t9k_scheduler(r: &T9kResolved) -> Option<&mpijob_api::t9k::v1beta1::T9kScheduler> {
    r.spec
        .scheduler
        .as_ref()
        .and_then(|s| s.t9k_scheduler.as_ref())
}

/// A T9k job's pods, as its gang counts them.
fn t9k_members(r: &T9kResolved, workers: u32) -> Members<'_> {
    Members {
        launcher: r.launcher.spec.as_ref(),
        worker: r.worker.spec.as_ref(),
        workers,
        launcher_waits: false,
    }
}

/// The gang of a T9k job named `name`: the T9k scheduler's when the job
/// names it, else the flag's, else none.
pub fn for_t9k(
    name: &str,
    annotations: &BTreeMap<String, String>,
    r: &T9kResolved,
    flag: Option<&GangScheduling>,
    priorities: &BTreeMap<String, i32>,
) -> Option<Gang> {
    let name = name.to_string();
    let workers = r.workers;
    if let Some(t9k) = t9k_scheduler(r) {
        let spec = json!({
            "minMember": workers + 1,
            "roles": [
                {"name": "launcher", "minMember": 1},
                {"name": "worker", "minMember": workers},
            ],
            "queue": t9k.queue.clone().unwrap_or_else(|| "default".into()),
            "priority": t9k.priority,
        });
        return Some(Gang {
            kind: Kind::T9k,
            scheduler: T9K_SCHEDULER.into(),
            name,
            min_member: i32::try_from(workers + 1).unwrap_or(i32::MAX),
            queue: t9k.queue.clone(),
            spec: object(spec),
            asked_by: "spec.scheduler.t9kScheduler".into(),
        });
    }
    let members = t9k_members(r, workers);
    flag.map(|f| of_flag(f, name, None, annotations, &members, priorities))
}

/// The gang of a Kubeflow job under `--gang-scheduling`, from its
/// `runPolicy.schedulingPolicy`; none without the flag (mpi-operator's
/// rule).
pub fn for_kubeflow(
    name: &str,
    annotations: &BTreeMap<String, String>,
    r: &Resolved,
    flag: Option<&GangScheduling>,
    priorities: &BTreeMap<String, i32>,
) -> Option<Gang> {
    let flag = flag?;
    let members = kubeflow_members(r);
    Some(of_flag(
        flag,
        name.to_string(),
        r.scheduling_policy.as_ref(),
        annotations,
        &members,
        priorities,
    ))
}

/// A Kubeflow job's pods, as its gang counts them.
pub fn kubeflow_members(r: &Resolved) -> Members<'_> {
    Members {
        launcher: r.launcher.template.spec.as_ref(),
        worker: r.worker.as_ref().and_then(|w| w.template.spec.as_ref()),
        workers: r.workers(),
        launcher_waits: r.launcher_creation_policy == LauncherCreationPolicy::WaitForWorkersReady,
    }
}

fn of_flag(
    flag: &GangScheduling,
    name: String,
    policy: Option<&SchedulingPolicy>,
    annotations: &BTreeMap<String, String>,
    members: &Members,
    priorities: &BTreeMap<String, i32>,
) -> Gang {
    let p = policy.cloned().unwrap_or_default();
    let min_member = p.min_available.unwrap_or_else(|| members.at_once());
    let min_resources = match p.min_resources {
        Some(given) => Some(given.into_iter().map(|(k, v)| (k, v.0)).collect()),
        None if min_member == 0 => None,
        None => members.min_resources(min_member, priorities),
    };
    let mut spec = Map::new();
    spec.insert("minMember".into(), json!(min_member));
    let (kind, queue) = match flag {
        GangScheduling::Volcano => {
            let queue = p
                .queue
                .filter(|q| !q.is_empty())
                .or_else(|| annotations.get(VOLCANO_QUEUE_ANNOTATION).cloned());
            if let Some(q) = &queue {
                spec.insert("queue".into(), json!(q));
            }
            // The policy's, then the launcher's, then the workers'.
            let class = p
                .priority_class
                .filter(|c| !c.is_empty())
                .or_else(|| members.launcher.and_then(|s| s.priority_class_name.clone()))
                .or_else(|| members.worker.and_then(|s| s.priority_class_name.clone()));
            if let Some(c) = class.filter(|c| !c.is_empty()) {
                spec.insert("priorityClassName".into(), json!(c));
            }
            (Kind::Volcano, queue)
        }
        GangScheduling::SchedulerPlugins(_) => {
            spec.insert(
                "scheduleTimeoutSeconds".into(),
                json!(p.schedule_timeout_seconds.unwrap_or(0)),
            );
            (Kind::SchedulerPlugins, None)
        }
    };
    if let Some(r) = min_resources {
        spec.insert("minResources".into(), json!(r));
    }
    Gang {
        kind,
        scheduler: flag.scheduler().to_string(),
        name,
        min_member,
        queue,
        spec,
        asked_by: flag.flag(),
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Put a pod (or a pod template) into the gang: its scheduler, and the
/// label or annotation that names the PodGroup. A `schedulerName` of the
/// template's own is replaced, as mpi-operator replaces it.
pub fn decorate(gang: &Gang, meta: &mut ObjectMeta, spec: &mut PodSpec) {
    if let Some(own) = spec
        .scheduler_name
        .as_ref()
        .filter(|s| **s != gang.scheduler)
    {
        tracing::warn!(pod = ?meta.name, template = %own, scheduler = %gang.scheduler, "the template's schedulerName is replaced by the gang scheduler's");
    }
    spec.scheduler_name = Some(gang.scheduler.clone());
    let (map, key) = match gang.kind {
        Kind::T9k => (&mut meta.labels, "scheduler.tensorstack.dev/group-name"),
        Kind::Volcano => (&mut meta.annotations, "scheduling.k8s.io/group-name"),
        Kind::SchedulerPlugins => (&mut meta.labels, "scheduling.x-k8s.io/pod-group"),
    };
    map.get_or_insert_with(BTreeMap::new)
        .insert(key.into(), gang.name.clone());
}

/// What ensuring the PodGroup found.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// The PodGroup exists (or was just created): the pods may follow.
    Ready(Gang),
    /// The PodGroup's CRD is not installed: the message says which and
    /// what asked for it.
    Missing(String),
}

/// The message for a PodGroup CRD that is not installed.
pub fn missing(gang: &Gang) -> String {
    let undo = if gang.kind == Kind::T9k {
        format!("remove {}", gang.asked_by)
    } else {
        "run the controller without --gang-scheduling".to_string()
    };
    format!(
        "PodGroup CRD {} ({}) is not installed, and {} asks for it: install {}, or {undo}; the pods are created once it is installed",
        gang.kind.crd(),
        gang.kind.api_version(),
        gang.asked_by,
        gang.kind.installer(),
    )
}

/// The gang condition: `(scheduled, reason, message)`; `None` while no pod
/// exists to wait.
pub fn condition(state: &State, pods: &[&Pod]) -> Option<(bool, &'static str, String)> {
    let gang = match state {
        State::Missing(message) => return Some((false, reason::CRD_MISSING, message.clone())),
        State::Ready(gang) => gang,
    };
    let live: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    if live.is_empty() {
        return None;
    }
    let waiting: Vec<&Pod> = live.iter().copied().filter(|p| !placed(p)).collect();
    if waiting.is_empty() {
        return Some((
            true,
            reason::SCHEDULED,
            format!(
                "{} placed all {} pods of PodGroup {}",
                gang.scheduler,
                live.len(),
                gang.name
            ),
        ));
    }
    let queue = gang
        .queue
        .as_ref()
        .map(|q| format!(", queue {q}"))
        .unwrap_or_default();
    let mut message = format!(
        "{} of {} pods wait for the gang scheduler {}, which starts PodGroup {} (minMember {}{queue}) only when all of its pods fit at once",
        waiting.len(),
        live.len(),
        gang.scheduler,
        gang.name,
        gang.min_member,
    );
    // The scheduler's own words, from the first pod it turned down.
    let said = waiting.iter().find_map(|p| {
        pod_scheduled(p)
            .filter(|c| c.status == "False")
            .and_then(|c| c.message.clone())
            .filter(|m| !m.is_empty())
    });
    match said {
        Some(words) => message.push_str(&format!("; {} says: {words}", gang.scheduler)),
        None if waiting.iter().all(|p| pod_scheduled(p).is_none()) => message.push_str(&format!(
            "; no scheduler has looked at them yet: check that {} runs in the cluster",
            gang.scheduler
        )),
        None => {}
    }
    Some((false, reason::WAITING, message))
}

fn pod_scheduled(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
}

/// The pod has a node.
fn placed(p: &Pod) -> bool {
    p.spec.as_ref().is_some_and(|s| s.node_name.is_some())
        || pod_scheduled(p).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests;
