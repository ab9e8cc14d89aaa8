//! The one status writer, for both APIs: the status as a merge patch from
//! the old one to the new, written only when they differ, and then the
//! events the change calls for, which the APIs' pure status code returns
//! as data.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::context::{Context, Write};
use super::error::Result;
use super::events::event;
use super::meta::JobMeta;

/// An event that a status change calls for.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &str, message: impl Into<String>) -> Note {
        Note {
            type_: EventType::Normal,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Note {
        Note {
            type_: EventType::Warning,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Write `next` through the status subresource when it differs from
/// `prev`, as a merge patch that also clears what went away, then log and
/// emit `notes`, in order.
pub async fn write<K, S>(
    ctx: &Context,
    job: &K,
    meta: &JobMeta,
    prev: Option<&S>,
    next: &S,
    notes: Vec<Note>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + PartialEq,
{
    if prev != Some(next) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &meta.namespace);
        ctx.wrote(Write::Status);
        api.patch_status(
            &meta.name,
            &PatchParams::default(),
            &Patch::Merge(&patch(prev, next)),
        )
        .await?;
    }
    for n in notes {
        tracing::info!(job = %meta.name, namespace = %meta.namespace, reason = %n.reason, "{}", n.message);
        event(ctx, job, n.type_, &n.reason, &n.message).await;
    }
    Ok(())
}

/// The body of the status write: `{"status": …}` with the merge patch
/// from `prev` (none: the whole of `next`) to `next`.
pub fn patch<S: Serialize>(prev: Option<&S>, next: &S) -> Value {
    let value = |s: &S| serde_json::to_value(s).unwrap_or(Value::Null);
    let before = prev.map_or(Value::Null, value);
    json!({ "status": merge_patch(&before, &value(next)) })
}

/// The JSON merge patch that turns `prev` into `next`: changed keys, and
/// `null` for keys that went away (a plain merge of `next` would leave
/// them, e.g. a worker count that dropped to zero and is omitted).
pub fn merge_patch(prev: &Value, next: &Value) -> Value {
    match (prev, next) {
        (Value::Object(p), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, nv) in n {
                match p.get(k) {
                    Some(pv) if pv == nv => {}
                    Some(pv) => {
                        out.insert(k.clone(), merge_patch(pv, nv));
                    }
                    None => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in p.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => next.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn a_merge_patch_clears_what_went_away() {
        let prev = json!({"replicaStatuses": {"Worker": {"active": 2}, "Launcher": {"active": 1}}, "startTime": "t"});
        let next =
            json!({"replicaStatuses": {"Worker": {}, "Launcher": {"active": 1}}, "startTime": "t"});
        assert_eq!(
            merge_patch(&prev, &next),
            json!({"replicaStatuses": {"Worker": {"active": null}}})
        );
        // From no status at all: the whole of the new one.
        assert_eq!(merge_patch(&json!(null), &next), next);
        // Lists are replaced whole, as a merge patch replaces them.
        assert_eq!(
            merge_patch(&json!({"c": [1, 2]}), &json!({"c": [2]})),
            json!({"c": [2]})
        );
    }
}
