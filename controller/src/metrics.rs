//! The controller's metrics, served at `/metrics` in the Prometheus text
//! format. Every series keeps the name and meaning it had before the
//! `prometheus-client` registry; the reconcile histogram and failures are new.

use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::error::Error;

/// What an API write request was for.
#[derive(Clone, Copy, Debug)]
pub enum Write {
    Create,
    Status,
    Event,
    /// Deletes and annotation patches of pods.
    Cleanup,
}

impl Write {
    const ALL: [Write; 4] = [Write::Create, Write::Status, Write::Event, Write::Cleanup];

    fn label(self) -> &'static str {
        match self {
            Write::Create => "create",
            Write::Status => "status",
            Write::Event => "event",
            Write::Cleanup => "cleanup",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

/// Upper bounds, in seconds, of the reconcile duration buckets: a reconcile
/// is a few API round trips, but the first ones wait for the caches.
const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The registry and handles to its series.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_errors: Counter,
    reconcile_failures: Family<ErrorLabel, Counter>,
    reconcile_duration: Histogram,
    api_writes: Family<KindLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mpijob");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "Reconciles run, whatever their outcome",
            reconciles.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error of the reconciler or of the controller's queue",
            reconcile_errors.clone(),
        );
        let reconcile_failures = Family::default();
        registry.register(
            "reconcile_failures",
            "Reconciler errors, by kind of error",
            reconcile_failures.clone(),
        );
        let reconcile_duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile of one MPIJob took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let api_writes: Family<KindLabel, Counter> = Family::default();
        registry.register(
            "api_writes",
            "API write requests made, by what they were for",
            api_writes.clone(),
        );
        // Every kind shows from the start, at 0, as readers of the counts
        // (the benchmark) expect.
        for kind in Write::ALL {
            let _ = api_writes.get_or_create(&KindLabel { kind: kind.label() });
        }
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_failures,
            reconcile_duration,
            api_writes,
        }
    }
}

impl Metrics {
    /// Count one API write request.
    pub fn wrote(&self, kind: Write) {
        self.api_writes
            .get_or_create(&KindLabel { kind: kind.label() })
            .inc();
    }

    /// Record one run of the reconciler: how long it took and, if it
    /// failed, what kind of error ended it.
    pub fn reconciled(&self, took: Duration, error: Option<&Error>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(e) = error {
            self.reconcile_failures
                .get_or_create(&ErrorLabel {
                    error: e.metric_label(),
                })
                .inc();
        }
    }

    /// Count one result of the controller's stream: a reconcile, or an
    /// error of the reconciler or of the queue when `ok` is false.
    pub fn controller_result(&self, ok: bool) {
        self.reconciles.inc();
        if !ok {
            self.reconcile_errors.inc();
        }
    }

    /// The Prometheus text (format 0.0.4) of every series.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)
            .expect("formatting into a String does not fail");
        text
    }

    /// The `Content-Type` of [`Metrics::encode`]'s text.
    pub const CONTENT_TYPE: &'static str = prometheus_text::CONTENT_TYPE;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_series_keep_their_names_and_start_at_zero() {
        let text = Metrics::default().encode();
        for line in [
            "mpijob_reconciles_total 0",
            "mpijob_reconcile_errors_total 0",
            "mpijob_api_writes_total{kind=\"create\"} 0",
            "mpijob_api_writes_total{kind=\"status\"} 0",
            "mpijob_api_writes_total{kind=\"event\"} 0",
            "mpijob_api_writes_total{kind=\"cleanup\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_failed_reconcile_shows_in_the_histogram_and_by_error_kind() {
        let m = Metrics::default();
        m.reconciled(
            Duration::from_millis(300),
            Some(&Error::MissingField("metadata.namespace")),
        );
        m.reconciled(Duration::from_millis(20), None);
        m.controller_result(false);
        m.controller_result(true);
        m.wrote(Write::Status);
        let text = m.encode();
        for line in [
            "# TYPE mpijob_reconcile_duration_seconds histogram",
            "mpijob_reconcile_duration_seconds_bucket{le=\"0.025\"} 1",
            "mpijob_reconcile_duration_seconds_bucket{le=\"0.25\"} 1",
            "mpijob_reconcile_duration_seconds_bucket{le=\"0.5\"} 2",
            "mpijob_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2",
            "mpijob_reconcile_duration_seconds_count 2",
            "# TYPE mpijob_reconcile_failures_total counter",
            "mpijob_reconcile_failures_total{error=\"missing_field\"} 1",
            "mpijob_reconciles_total 2",
            "mpijob_reconcile_errors_total 1",
            "mpijob_api_writes_total{kind=\"status\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
