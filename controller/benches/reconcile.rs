//! The cost of one T9k reconcile of a running job, without its I/O, at
//! 100, 1000 and 10000 workers (the maximum): finding the job's pods in the
//! cache, computing the status, and serialising it for the write. Linear
//! means the time per pod stays the same as the job grows. The cache also
//! holds 999 other jobs of 8 workers and a launcher each, as a controller
//! at 1000 jobs has: they must cost nothing.
//!
//! Run: `cargo bench -p mpijob-controller --bench reconcile`

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::store;
use kube::runtime::watcher;
use mpijob_api::contract::labels;
use mpijob_api::contract::labels::JOB_NAME;
use mpijob_api::MPIJob;
use mpijob_controller::core::apply::owned_pods;
use mpijob_controller::core::meta::JobMeta;
use mpijob_controller::core::pods::{JobIndex, Pods};
use mpijob_controller::core::status as status_writer;
use mpijob_controller::t9k::status;
use serde_json::json;

fn job(workers: usize) -> MPIJob {
    let mut job: MPIJob = serde_json::from_value(json!({
        "apiVersion": "batch.tensorstack.dev/v1beta1",
        "kind": "MPIJob",
        "metadata": {"name": "big", "namespace": "team", "uid": "big-uid"},
        "spec": {"worker": {"replicas": workers, "cmd": ["/pi"], "template": {"spec": {"containers": [{"name": "mpi-worker", "image": "mpi"}]}}}}
    }))
    .unwrap();
    mpijob_api::t9k::defaults::normalize(&mut job.spec);
    job
}

/// A running pod of the job, as the cache holds it.
fn pod(job: &str, name: &str, role: &str, index: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "team", "uid": format!("uid-{name}"),
            "labels": {"batch.tensorstack.dev/mpi-job-name": job, "batch.tensorstack.dev/replica-type": role, "batch.tensorstack.dev/replica-index": index.to_string()},
            "ownerReferences": [{"apiVersion": "batch.tensorstack.dev/v1beta1", "kind": "MPIJob", "name": job, "uid": format!("{job}-uid"), "controller": true}]
        },
        "spec": {"containers": [{"name": "mpi-worker", "image": "mpi"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "mpi-worker", "ready": true, "restartCount": 0, "image": "mpi", "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
        ]}
    }))
    .unwrap()
}

fn main() {
    println!("one reconcile of a running job, no I/O (median of the runs):");
    println!(
        "{:>8} {:>12} {:>14} {:>10}",
        "workers", "reconcile", "per pod", "status"
    );
    let mut per_pod = Vec::new();
    for workers in [100usize, 1000, 5000, 10_000] {
        let job = job(workers);
        let meta = JobMeta::of(&job, labels::JOB_NAME).unwrap();
        let (reader, mut writer) = store::<Pod>();
        let index = Arc::new(JobIndex::new(JOB_NAME));
        let cache = Pods::new(reader, index.clone());
        let mut feed = |e: watcher::Event<Pod>| {
            index.apply(&e);
            writer.apply_watcher_event(&e);
        };
        feed(watcher::Event::Init);
        let jobs = std::iter::once(("big".to_string(), workers))
            .chain((1..1000).map(|j| (format!("other-{j}"), 8)));
        for (name, n) in jobs {
            feed(watcher::Event::InitApply(pod(
                &name,
                &format!("{name}-launcher"),
                "launcher",
                0,
            )));
            for i in 0..n {
                feed(watcher::Event::InitApply(pod(
                    &name,
                    &format!("{name}-worker-{i}"),
                    "worker",
                    i,
                )));
            }
        }
        feed(watcher::Event::InitDone);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let observed = status::Observed {
            all_created: true,
            ..Default::default()
        };
        let once = || {
            let pods = owned_pods(&cache, &meta);
            let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
            let prev = job.status.as_ref();
            let next = status::compute(&job, &refs, prev, &observed, &now);
            let body = serde_json::to_vec(&status_writer::patch(prev, &next)).unwrap();
            (prev == Some(&next), body.len())
        };
        let (_, bytes) = once();
        // Where the time goes: the cache read, the status, the body.
        let split = {
            let t = Instant::now();
            let pods = owned_pods(&cache, &meta);
            let read = t.elapsed();
            let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
            let t = Instant::now();
            let next = status::compute(&job, &refs, None, &observed, &now);
            let computed = t.elapsed();
            let t = Instant::now();
            std::hint::black_box(serde_json::to_vec(&status_writer::patch(None, &next)).unwrap());
            (read, computed, t.elapsed())
        };
        let runs = (200_000 / workers).clamp(5, 200);
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(once());
                t.elapsed()
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        let each = median.as_secs_f64() * 1e6 / (workers + 1) as f64;
        per_pod.push(each);
        println!(
            "{workers:>8} {:>10.2} ms {:>11.2} µs {:>8} B   (one run: cache {:.2} ms, status {:.2} ms, body {:.2} ms)",
            median.as_secs_f64() * 1e3,
            each,
            bytes,
            split.0.as_secs_f64() * 1e3,
            split.1.as_secs_f64() * 1e3,
            split.2.as_secs_f64() * 1e3,
        );
    }
    println!(
        "per pod at 10000 / per pod at 100: {:.2}× (1.00× is linear)",
        per_pod[3] / per_pod[0]
    );
}
