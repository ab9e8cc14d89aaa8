//! TensorStack T9k's `batch.tensorstack.dev/v1beta1` MPIJob. One
//! reconcile: dereference → validate → build → apply → status. Each step
//! is its own module; `build` and the status computation are pure.

pub mod apply;
pub mod build;
pub mod started;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use mpijob_api::t9k::defaults;
use mpijob_api::t9k::resolve;
use mpijob_api::t9k::v1beta1::{ConditionType, MPIJobStatus, Phase};
use mpijob_api::{contract, MPIJob};

use crate::core::apply::owned_pods;
use crate::core::context::{Context, COMPACT_ABOVE};
use crate::core::error::{Error, Result};
use crate::core::meta::JobMeta;
use crate::core::status as status_writer;
use crate::gang::{self, podgroups};
use mpijob_api::contract::labels;
use mpijob_api::t9k::v1beta1::CleanUpWorkers;

/// What the T9k reconciler reads: the shared context (its caches hold the
/// children labelled with T9k's job-name label) and the gang settings.
pub struct T9kContext {
    pub core: Context,
    pub gang: podgroups::Scheduling,
}

impl AsRef<Context> for T9kContext {
    fn as_ref(&self) -> &Context {
        &self.core
    }
}

/// Bring the cluster in line with one job, and its status in line with the
/// cluster.
pub async fn reconcile(job: Arc<MPIJob>, tctx: Arc<T9kContext>) -> Result<Action> {
    let ctx = &tctx.core;
    if job.metadata.deletion_timestamp.is_some() {
        // Owner references hand the children to the garbage collector.
        return Ok(Action::await_change());
    }
    // Existence checks read the caches: wait until they hold the truth, so
    // that a restarted controller adopts what exists instead of re-creating.
    ctx.synced.wait().await?;
    let meta = JobMeta::of(&*job, labels::JOB_NAME)?;
    // A large job is reconciled at most once per Pace::EVERY: each
    // reconcile reads all of its pods and writes its whole status, and its
    // pods change thousands of times. The changes in between are taken
    // together by the next one.
    if job.spec.worker().replicas > COMPACT_ABOVE as i32 {
        if let Some(left) = ctx.large_jobs.wait(&meta) {
            return Ok(Action::requeue(left));
        }
    }
    let prev = job.status.as_ref();
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    // Once its launcher exists, a job keeps the spec it started with (see
    // `started`). A later edit is reported and ignored, never acted on
    // half-way; before that, the spec is validated and used as it is.
    // `runMode` is the exception: pausing and debugging are acted on
    // whenever they change. A launcher that is going (paused, or replaced)
    // no longer holds the job's shape.
    let mut job = (*job).clone();
    let launcher = apply::owned_pod(&ctx.pods, &meta, &contract::launcher_name(&meta.name))
        .filter(|p| p.metadata.deletion_timestamp.is_none());
    let mut edits = Vec::new();
    let resolved = match launcher.as_deref().and_then(started::of_launcher) {
        Some(Ok(mut spec)) => {
            let mut current = job.spec.clone();
            defaults::normalize(&mut current);
            spec.run_mode = current.run_mode.clone();
            edits = started::edits(&spec, &current);
            job.spec = spec;
            // Valid when it started: not judged again by today's rules.
            resolve::of_valid(&job).map_err(|e| Error::StartedSpec(e.to_string()))?
        }
        Some(Err(e)) => return Err(Error::StartedSpec(e)),
        None => match resolve::resolve(&job) {
            Ok(r) => r,
            Err(errors) => {
                let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
                let next = status::invalid(prev, job.metadata.generation, &messages, &now);
                let notes = status::notes(prev, &next, &[]);
                status_writer::write(ctx, &job, &meta, prev, &next, notes).await?;
                return Ok(Action::await_change());
            }
        },
    };
    job.spec = resolved.spec.clone();

    let phase = prev.and_then(|s| s.phase);
    let finished = phase.is_some_and(Phase::is_finished);
    let mut run = status::Run {
        pause: resolved.pause,
        debug: resolved.debug,
        resuming: false,
        replaced: false,
    };
    if !finished && !run.pause {
        // Pods built for the other side of a debug switch are replaced.
        let debug = run.debug;
        let switched = owned_pods(&ctx.pods, &meta).iter().any(|p| {
            p.metadata.deletion_timestamp.is_none() && build::pod::built_for_debug(p) != debug
        });
        if switched {
            apply::delete_pods(ctx, &meta).await?;
        }
        run.replaced = switched;
        run.resuming = switched || matches!(phase, Some(Phase::Paused | Phase::Resuming));
    }
    let gang = tctx.gang.t9k_gang(&job, &resolved).await;
    let observed = if finished {
        status::Observed::default()
    } else {
        // Pods are created before the job runs; a pod lost while it runs
        // fails the job instead of being replaced behind its back.
        let mut may_create_pods = !run.pause
            && matches!(
                phase,
                None | Some(Phase::Pending | Phase::Resuming | Phase::Paused)
            );
        // The PodGroup comes first: the gang scheduler must know the group
        // before it sees the pods. A paused job has none.
        let (mut gang_state, mut gang_conflict) = (None, None);
        if let Some(g) = gang.as_ref().filter(|_| !run.pause) {
            let found = tctx.gang.ensure(ctx, &meta, g).await?;
            gang_state = found.state(g);
            match found {
                podgroups::Ensured::Missing(_) => may_create_pods = false,
                podgroups::Ensured::Conflict(c) => {
                    may_create_pods = false;
                    gang_conflict = Some(c);
                }
                podgroups::Ensured::Ready | podgroups::Ensured::Created => {}
            }
        }
        let mut o = apply::children(
            ctx,
            &resolved,
            &meta,
            may_create_pods,
            run.resuming,
            gang.as_ref(),
        )
        .await?;
        o.conflicts.extend(gang_conflict);
        o.gang = gang_state;
        o
    };
    let observed = status::Observed {
        edits,
        run,
        ..observed
    };
    if observed.created_any && observed.conflicts.is_empty() && observed.rejected.is_empty() {
        // The new children's watch events trigger the next reconcile, which
        // sees them in the caches and writes the status once, instead of
        // now and again then.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let pods = owned_pods(&ctx.pods, &meta);
    let pod_refs: Vec<&_> = pods.iter().map(|p| p.as_ref()).collect();
    let next = status::compute(&job, &pod_refs, prev, &observed, &now);
    if status::newly_true(prev, &next, ConditionType::Running) {
        if let Some(start) = &next.start_time {
            ctx.metrics.all_running("t9k", start, &now);
        }
    }
    if next.phase == Some(Phase::Paused) {
        apply::delete_pods(ctx, &meta).await?;
        if let Some(g) = &gang {
            tctx.gang.delete(ctx, &meta, g.kind).await?;
        }
    }
    let notes = status::notes(prev, &next, &observed.conflicts);
    status_writer::write(ctx, &job, &meta, prev, &next, notes).await?;

    if next.phase.is_some_and(Phase::is_finished) {
        if let Some(left) = settling(&next, &now) {
            // The workers' own ends may still be on their way from the
            // kubelet: look again once they have had the time to land.
            return Ok(Action::requeue(left));
        }
        let policy = &resolved.clean_up_workers;
        apply::finish_workers(ctx, &meta, policy).await?;
        // The PodGroup goes with the workers the policy deletes.
        if let Some(g) = gang
            .as_ref()
            .filter(|_| matches!(policy, CleanUpWorkers::All | CleanUpWorkers::Unfinished))
        {
            tctx.gang.delete(ctx, &meta, g.kind).await?;
        }
    }
    if !observed.conflicts.is_empty() {
        // The clashing object is not ours, so no watch tells us when it
        // goes: look again shortly.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    if matches!(observed.gang, Some(gang::State::Missing(_))) {
        // No watch tells when the PodGroup CRD is installed: look again.
        return Ok(Action::requeue(
            podgroups::PodGroups::RECHECK + Duration::from_secs(5),
        ));
    }
    Ok(Action::await_change())
}

/// How long a failed job's workers are left alone after the failure before
/// the clean-up policy deletes them. mpirun on the launcher sees a rank die
/// at once, while the worker's own end (an OOM kill: 137, `OOMKilled`)
/// reaches the API server a kubelet status sync later; deleting the worker
/// first would lose it from the status for good.
pub const FAILURE_SETTLE: Duration = Duration::from_secs(3);

/// The rest of [`FAILURE_SETTLE`] for a job that failed less than that
/// long ago; `None` when its workers may be cleaned up now.
pub fn settling(status: &MPIJobStatus, now: &Time) -> Option<Duration> {
    if status.phase != Some(Phase::Failed) {
        return None;
    }
    let at = status.completion_time.as_ref()?;
    let since = Duration::try_from(now.0.duration_since(at.0)).unwrap_or(Duration::ZERO);
    FAILURE_SETTLE
        .checked_sub(since)
        .filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn a_failed_jobs_workers_settle_for_three_seconds() {
        let failed = MPIJobStatus {
            phase: Some(Phase::Failed),
            completion_time: Some(at("2026-01-01T00:00:10Z")),
            ..MPIJobStatus::default()
        };
        assert_eq!(
            settling(&failed, &at("2026-01-01T00:00:11Z")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(settling(&failed, &at("2026-01-01T00:00:13Z")), None);
        // A clock behind the completion time waits the whole period.
        assert_eq!(
            settling(&failed, &at("2026-01-01T00:00:09Z")),
            Some(FAILURE_SETTLE)
        );
        let succeeded = MPIJobStatus {
            phase: Some(Phase::Succeeded),
            ..failed.clone()
        };
        assert_eq!(settling(&succeeded, &at("2026-01-01T00:00:10Z")), None);
    }
}
