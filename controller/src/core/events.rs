//! Events about a job, and the error policy every API's controller shares.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::Resource;

use super::context::{Context, Write};
use super::error::Error;

/// Emit an event about the job. Events are best effort: a failure to
/// record one is logged, never fatal.
pub async fn event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    job: &K,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    ctx.wrote(Write::Event);
    if let Err(e) = ctx.recorder.publish(&ev, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "could not record an event");
    }
}

/// Every API's error policy: log, emit a Warning event (in the
/// background), and requeue in 5 s.
pub fn error_policy<K, C>(job: Arc<K>, error: &Error, ctx: Arc<C>) -> Action
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    C: AsRef<Context> + Send + Sync + 'static,
{
    tracing::warn!(
        job = %job.meta().name.as_deref().unwrap_or_default(),
        namespace = %job.meta().namespace.as_deref().unwrap_or_default(),
        error = %error,
        kind = error.metric_label(),
        "reconcile failed; retrying in 5 s"
    );
    let message = error.to_string();
    tokio::spawn(async move {
        event(
            (*ctx).as_ref(),
            &*job,
            EventType::Warning,
            "ReconcileError",
            &message,
        )
        .await;
    });
    Action::requeue(Duration::from_secs(5))
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when
/// it was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
