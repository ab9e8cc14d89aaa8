//! The controller's metrics, served at `/metrics` in the Prometheus text
//! format. Our own series are named `mpijob_*`; Kubeflow jobs are also
//! counted under mpi-operator's names (`mpi_operator_*`), so that its
//! dashboards and alerts keep working after the swap.

use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::error::Error;

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

/// mpi-operator's `mpi_operator_job_info` labels: the launcher Job's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobInfoLabel {
    launcher: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: &'static str,
}

/// Upper bounds, in seconds, of the launcher wait buckets: from a job's
/// start until all of its pods run.
const WAIT_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

#[derive(Clone)]
struct WaitHistogram;

impl MetricConstructor<Histogram> for WaitHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(WAIT_BUCKETS)
    }
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
    launcher_wait: Family<ApiLabel, Histogram, WaitHistogram>,
    kubeflow_created: Counter,
    kubeflow_succeeded: Counter,
    kubeflow_failed: Counter,
    kubeflow_job_info: Family<JobInfoLabel, Gauge>,
    is_leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let ours = registry.sub_registry_with_prefix("mpijob");
        let reconciles = Counter::default();
        ours.register(
            "reconciles",
            "Reconciles run, whatever their outcome",
            reconciles.clone(),
        );
        let reconcile_errors = Counter::default();
        ours.register(
            "reconcile_errors",
            "Reconciles that ended in an error of the reconciler or of the controller's queue",
            reconcile_errors.clone(),
        );
        let reconcile_failures = Family::default();
        ours.register(
            "reconcile_failures",
            "Reconciler errors, by kind of error",
            reconcile_failures.clone(),
        );
        let reconcile_duration = Histogram::new(DURATION_BUCKETS);
        ours.register_with_unit(
            "reconcile_duration",
            "Time one reconcile of one MPIJob took",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let api_writes: Family<KindLabel, Counter> = Family::default();
        ours.register(
            "api_writes",
            "API write requests made, by what they were for",
            api_writes.clone(),
        );
        // Every kind shows from the start, at 0, as readers of the counts
        // (the benchmark) expect.
        for kind in Write::ALL {
            let _ = api_writes.get_or_create(&KindLabel { kind: kind.label() });
        }
        let launcher_wait = Family::new_with_constructor(WaitHistogram);
        ours.register_with_unit(
            "launcher_wait",
            "From a job's start until all of its pods run (the launcher's MPI program starts then), by API",
            Unit::Seconds,
            launcher_wait.clone(),
        );
        let kubeflow_created = Counter::default();
        registry.register(
            "mpi_operator_jobs_created",
            "Counts number of MPI jobs created",
            kubeflow_created.clone(),
        );
        let kubeflow_succeeded = Counter::default();
        registry.register(
            "mpi_operator_jobs_successful",
            "Counts number of MPI jobs successful",
            kubeflow_succeeded.clone(),
        );
        let kubeflow_failed = Counter::default();
        registry.register(
            "mpi_operator_jobs_failed",
            "Counts number of MPI jobs failed",
            kubeflow_failed.clone(),
        );
        let kubeflow_job_info = Family::default();
        registry.register(
            "mpi_operator_job_info",
            "Information about MPIJob",
            kubeflow_job_info.clone(),
        );
        let is_leader = Gauge::default();
        registry.register(
            "mpi_operator_is_leader",
            "Is this client the leader of this mpi-operator client set?",
            is_leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_failures,
            reconcile_duration,
            api_writes,
            launcher_wait,
            kubeflow_created,
            kubeflow_succeeded,
            kubeflow_failed,
            kubeflow_job_info,
            is_leader,
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

    /// A job of `api` that started at `start` has all of its pods running
    /// at `now`.
    pub fn all_running(
        &self,
        api: &'static str,
        start: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
        now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ) {
        let waited = now.0.duration_since(start.0).as_secs_f64();
        self.launcher_waited(api, waited.max(0.0));
    }

    /// A job's pods all run, `seconds` after it started.
    pub fn launcher_waited(&self, api: &'static str, seconds: f64) {
        self.launcher_wait
            .get_or_create(&ApiLabel { api })
            .observe(seconds);
    }

    /// A Kubeflow job was seen for the first time.
    pub fn kubeflow_created(&self) {
        self.kubeflow_created.inc();
    }

    /// A Kubeflow job succeeded.
    pub fn kubeflow_succeeded(&self) {
        self.kubeflow_succeeded.inc();
    }

    /// A Kubeflow job failed (its launcher failed; an eviction is not
    /// counted, as in mpi-operator).
    pub fn kubeflow_failed(&self) {
        self.kubeflow_failed.inc();
    }

    /// A Kubeflow job's launcher Job exists (never unset, as in
    /// mpi-operator).
    pub fn kubeflow_job_info(&self, launcher: &str, namespace: &str) {
        self.kubeflow_job_info
            .get_or_create(&JobInfoLabel {
                launcher: launcher.to_string(),
                namespace: namespace.to_string(),
            })
            .set(1);
    }

    /// Whether this replica leads (1) or stands by (0).
    pub fn set_leader(&self, leading: bool) {
        self.is_leader.set(i64::from(leading));
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
    fn kubeflow_jobs_are_counted_under_mpi_operators_names() {
        let m = Metrics::default();
        m.kubeflow_created();
        m.kubeflow_created();
        m.kubeflow_succeeded();
        m.kubeflow_failed();
        m.kubeflow_job_info("pi-launcher", "team");
        m.set_leader(true);
        m.launcher_waited("kubeflow", 3.0);
        let text = m.encode();
        for line in [
            "# TYPE mpi_operator_jobs_created_total counter",
            "mpi_operator_jobs_created_total 2",
            "mpi_operator_jobs_successful_total 1",
            "mpi_operator_jobs_failed_total 1",
            "mpi_operator_job_info{launcher=\"pi-launcher\",namespace=\"team\"} 1",
            "mpi_operator_is_leader 1",
            "mpijob_launcher_wait_seconds_bucket{api=\"kubeflow\",le=\"5\"} 1",
            "mpijob_launcher_wait_seconds_count{api=\"kubeflow\"} 1",
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
