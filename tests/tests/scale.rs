//! The declared maximum holds: a job with `MAX_REPLICAS` workers, on the
//! API server harness with the kubelet stand-in, is created, reaches
//! Running and Succeeded, and every status write fits what etcd stores.
//! Above `COMPACT_ABOVE` workers the status lists plainly healthy workers
//! by name and phase only; the largest status written is printed.

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::Api;
use mpijob_api::t9k::v1beta1::{MPIJobStatus, Phase, ReplicaPhase};
use mpijob_api::validate::MAX_REPLICAS;
use mpijob_api::MPIJob;
use mpijob_controller::core::context::COMPACT_ABOVE;
use mpijob_tests::controller::wait_for;
use mpijob_tests::fixtures::pi_job;
use mpijob_tests::Env;
use serde_json::json;

/// Slow on a 2-core machine: every pod is created and run.
const T: Duration = Duration::from_secs(600);
/// What etcd takes in one request by default (`--max-request-bytes`).
const ETCD_LIMIT: usize = 1536 * 1024;

#[tokio::test]
async fn the_largest_job_allowed_runs_and_succeeds_with_a_status_that_fits() {
    let e = Env::<MPIJob>::new("scale").await;
    let (client, pods, kubelet) = (&e.client, &e.pods, &e.kubelet);
    let _c = e.controller();
    let workers = MAX_REPLICAS as usize;
    assert!(workers > COMPACT_ABOVE);

    let mut job = pi_job("big");
    job["spec"]["worker"]["replicas"] = json!(workers);
    let job: MPIJob = serde_json::from_value(job).unwrap();
    let refused_before = too_many_requests(client).await;
    let started = Instant::now();
    e.jobs.create(&PostParams::default(), &job).await.unwrap();
    let names: Vec<String> = std::iter::once("big-launcher".to_string())
        .chain((0..workers).map(|i| format!("big-worker-{i}")))
        .collect();
    wait_for("every pod created", T, || async {
        let n = pods
            .list_metadata(&ListParams::default())
            .await
            .unwrap()
            .items
            .len();
        if n == names.len() {
            Ok(())
        } else {
            Err(format!("{n} of {}", names.len()))
        }
    })
    .await;
    println!(
        "{} pods created in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );

    // The status, and the size of the whole object as JSON.
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &e.ns.name,
        &ApiResource::erase::<MPIJob>(&()),
    );
    let stored = || async {
        let job = raw.get("big").await.unwrap();
        let bytes = serde_json::to_vec(&job).unwrap().len();
        let status: MPIJobStatus =
            serde_json::from_value(job.data["status"].clone()).unwrap_or_default();
        (status, bytes)
    };

    let containers = vec!["mpi-worker".to_string()];
    stream::iter(&names)
        .for_each_concurrent(32, |p| kubelet.run_containers(p, &containers))
        .await;
    println!(
        "every pod running after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (status, running_bytes) = wait_for("Running", T, || async {
        let (s, bytes) = stored().await;
        if s.phase == Some(Phase::Running) {
            Ok((s, bytes))
        } else {
            Err(format!("{:?} {:?}", s.phase, s.aggregate))
        }
    })
    .await;
    let aggregate = status.aggregate.clone().unwrap();
    assert_eq!(aggregate.running as usize, names.len());
    let listed = &status.tasks[1].replicas;
    assert_eq!(listed.len(), workers);
    // Healthy workers are listed by name and phase only; the launcher in full.
    assert!(listed
        .iter()
        .all(|r| r.phase == ReplicaPhase::Running && r.uid.is_none() && r.containers.is_empty()));
    assert!(status.tasks[0].replicas[0].uid.is_some());
    println!(
        "Running: {running_bytes} bytes ({:.0} a worker)",
        running_bytes as f64 / workers as f64
    );

    // The launcher exits 0: Succeeded, written while the workers still run.
    kubelet
        .succeed_containers("big-launcher", &containers)
        .await;
    let (status, done_bytes) = wait_for("Succeeded", T, || async {
        let (s, bytes) = stored().await;
        if s.phase == Some(Phase::Succeeded) {
            Ok((s, bytes))
        } else {
            Err(format!("{:?} {:?}", s.phase, s.aggregate))
        }
    })
    .await;
    assert_eq!(status.tasks[0].replicas[0].containers[0].exit_code, Some(0));
    println!(
        "Succeeded: {done_bytes} bytes ({:.0} a worker), after {:.1} s",
        done_bytes as f64 / workers as f64,
        started.elapsed().as_secs_f64()
    );
    // The controller's writes stayed within what the API server takes.
    let refused = too_many_requests(client).await - refused_before;
    assert_eq!(
        refused, 0,
        "the API server answered 429 Too Many Requests {refused} times"
    );
    let largest = running_bytes.max(done_bytes);
    assert!(
        largest < ETCD_LIMIT / 2,
        "the status of the largest job takes {largest} bytes, near etcd's {ETCD_LIMIT}"
    );
}

/// How many requests the API server has answered 429 Too Many Requests,
/// from its own metrics.
async fn too_many_requests(client: &kube::Client) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client
        .request_text(req)
        .await
        .expect("the API server's /metrics");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("code=\"429\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
