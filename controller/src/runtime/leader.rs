//! Leader election with a coordination.k8s.io Lease, so that several
//! replicas of the controller can run and only one acts.
//!
//! The holder renews the lease every `renew_every`; another replica takes it
//! over once it has not been renewed for `duration`. A leader that cannot
//! renew in time stops (the process exits and is restarted), as client-go's
//! leader election does. On a clean shutdown the lease is released, so the
//! next replica takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// Where the lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name (its pod name in a cluster).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the holder renews it.
    pub renew_every: Duration,
}

/// What to do with the lease as it stands. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's, expired (or released): take it over.
    TakeOver,
    /// Someone else's, live: wait.
    Wait(String),
}

/// Decide from the lease's spec.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(default_duration);
    let expired = match &spec.renew_time {
        Some(MicroTime(t)) => {
            now > *t + SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
        }
        None => true,
    };
    if expired {
        Decision::TakeOver
    } else {
        Decision::Wait(holder.to_string())
    }
}

fn spec_for(cfg: &LeaseConfig, prev: Option<&LeaseSpec>, now: Timestamp, renew: bool) -> LeaseSpec {
    let transitions = prev.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(cfg.duration.as_secs().max(1) as i32),
        acquire_time: if renew {
            prev.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renew || prev.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// One attempt to acquire or renew. `Ok(None)` means someone else holds it.
async fn try_hold(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Option<()>, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
        cfg.duration,
    );
    let prev = current.as_ref().and_then(|l| l.spec.as_ref());
    let result = match decision {
        Decision::Wait(_) => return Ok(None),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec_for(cfg, None, now, false)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Decision::Renew | Decision::TakeOver => {
            let mut lease = current.clone().expect("a lease to renew or take over");
            lease.spec = Some(spec_for(cfg, prev, now, decision == Decision::Renew));
            // resourceVersion is kept: a concurrent writer makes this fail.
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(Some(())),
        // Someone else wrote it first.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Wait until this replica holds the lease, saying who holds it meanwhile.
pub async fn acquire(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut said = false;
    loop {
        match try_hold(&api, cfg).await {
            Ok(Some(())) => {
                tracing::info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "became the leader");
                return;
            }
            Ok(None) if !said => {
                tracing::info!(lease = %cfg.name, namespace = %cfg.namespace, "another replica is the leader; standing by");
                said = true;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "leader election: cannot read or write the lease"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renew the lease until it is lost; returns then. Losing it means not
/// renewing within the lease's duration, or seeing another holder.
pub async fn hold(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match try_hold(&api, cfg).await {
            Ok(Some(())) => last_renewal = tokio::time::Instant::now(),
            Ok(None) => {
                tracing::error!(lease = %cfg.name, "another replica took the lease");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "leader election: renewal failed"),
        }
        if last_renewal.elapsed() >= cfg.duration {
            tracing::error!(lease = %cfg.name, "could not renew the lease in time");
            return;
        }
    }
}

/// Give the lease up, so that another replica takes over at once.
pub async fn release(client: &Client, cfg: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(cfg.identity.as_str());
        if ours {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            let _ = api.replace(&cfg.name, &PostParams::default(), &lease).await;
            tracing::info!(lease = %cfg.name, "released the lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn held_by(who: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(who.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        let now = at("2026-01-01T00:00:20Z");
        assert_eq!(decide(None, "a", now, d), Decision::Create);
        assert_eq!(
            decide(Some(&held_by("a", "2026-01-01T00:00:19Z")), "a", now, d),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&held_by("b", "2026-01-01T00:00:10Z")), "a", now, d),
            Decision::Wait("b".into())
        );
        assert_eq!(
            decide(Some(&held_by("b", "2026-01-01T00:00:04Z")), "a", now, d),
            Decision::TakeOver
        );
        let released = LeaseSpec {
            holder_identity: None,
            ..held_by("b", "2026-01-01T00:00:19Z")
        };
        assert_eq!(decide(Some(&released), "a", now, d), Decision::TakeOver);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let cfg = LeaseConfig {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let prev = LeaseSpec {
            acquire_time: Some(MicroTime(at("2026-01-01T00:00:00Z"))),
            lease_transitions: Some(2),
            ..held_by("b", "2026-01-01T00:00:01Z")
        };
        let now = at("2026-01-01T00:01:00Z");
        let taken = spec_for(&cfg, Some(&prev), now, false);
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        let renewed = spec_for(&cfg, Some(&taken), at("2026-01-01T00:01:05Z"), true);
        assert_eq!(renewed.acquire_time, Some(MicroTime(now)));
        assert_eq!(renewed.lease_transitions, Some(3));
    }
}
