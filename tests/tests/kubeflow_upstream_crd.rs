//! The drop-in case: a cluster that ran Kubeflow's mpi-operator keeps
//! Kubeflow's own CRD for `mpijobs.kubeflow.org`. Everything the controller
//! writes must be accepted by that schema, and nothing of it pruned.
//!
//! Kubeflow's CRD is the fixture `tests/fixtures/kubeflow-upstream-crd.yaml`
//! (written from the published schema). It replaces ours for this test
//! binary only, and ours is put back at the end; cargo runs test binaries
//! one after another, so no other test sees it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mpijob_api::kubeflow::v2beta1::{JobCondition, ReplicaStatus};
use mpijob_api::kubeflow::{JobStatus, MPIJob};
use mpijob_tests::cluster::repo_root;
use mpijob_tests::controller::wait_for;
use mpijob_tests::fixtures::kubeflow_pi_job;
use mpijob_tests::kubelet_stand_in::Termination;
use mpijob_tests::{crds, Env, T};
use serde_json::json;

const CRD: &str = "mpijobs.kubeflow.org";

/// Replace the installed `mpijobs.kubeflow.org` with the CRD in `file`.
async fn install_crd(client: &Client, file: &str) {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let mut crd: CustomResourceDefinition = mpijob_api::yaml::from_str(&text).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let live = api.get(CRD).await.unwrap();
    crd.metadata.resource_version = live.resource_version();
    api.replace(CRD, &PostParams::default(), &crd)
        .await
        .unwrap_or_else(|e| panic!("replacing {CRD} with {file}: {e}"));
    crds::wait_established(client, CRD).await;
}

#[tokio::test]
async fn everything_the_controller_writes_fits_kubeflows_own_crd() {
    let e = Env::<MPIJob>::new("kf-upstream").await;
    install_crd(&e.client, "tests/fixtures/kubeflow-upstream-crd.yaml").await;
    let jobs = &e.jobs;

    // Kubeflow's schema has no enum for launcherCreationPolicy: once a
    // value ours refuses is stored, the server serves the fixture.
    let mut probe = kubeflow_pi_job("probe");
    probe["spec"]["launcherCreationPolicy"] = json!("WaitForWorkers");
    let probe: MPIJob = serde_json::from_value(probe).unwrap();
    wait_for("the API server to serve Kubeflow's schema", T, || async {
        jobs.create(&PostParams::default(), &probe)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;

    // Every status field, as the controller writes it, is kept as written.
    let t = |s: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().unwrap());
    let full = JobStatus {
        conditions: vec![
            JobCondition {
                type_: "Created".into(),
                status: "True".into(),
                reason: Some("MPIJobCreated".into()),
                message: Some("MPIJob ns/probe is created.".into()),
                last_update_time: Some(t("2026-01-01T00:00:00Z")),
                last_transition_time: Some(t("2026-01-01T00:00:00Z")),
            },
            JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("BackoffLimitExceeded/".into()),
                message: Some("Job has reached the specified backoff limit: ; launcher pod probe-launcher-x container mpi-launcher exited 137 (OOMKilled)".into()),
                last_update_time: Some(t("2026-01-01T00:01:00Z")),
                last_transition_time: Some(t("2026-01-01T00:01:00Z")),
            },
        ],
        replica_statuses: [
            ("Launcher".to_string(), ReplicaStatus { failed: 1, ..Default::default() }),
            ("Worker".to_string(), ReplicaStatus { active: 2, succeeded: 1, ..Default::default() }),
        ]
        .into(),
        start_time: Some(t("2026-01-01T00:00:00Z")),
        completion_time: Some(t("2026-01-01T00:01:00Z")),
        last_reconcile_time: None,
    };
    let stored = jobs
        .patch_status(
            "probe",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": full})),
        )
        .await
        .unwrap();
    assert_eq!(
        stored.status.as_ref(),
        Some(&full),
        "Kubeflow's CRD pruned or changed a status field"
    );
    // The controller sees the bad policy and says so; it writes no status.
    let _c = e.controller();

    // A whole job, through the controller, to success.
    e.create(kubeflow_pi_job("pi")).await;
    for w in ["pi-worker-0", "pi-worker-1"] {
        wait_for(&format!("pod {w}"), T, || async {
            e.pods.get(w).await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
        e.kubelet.run(w).await;
    }
    let launcher = wait_for("the launcher pod", T, || async {
        let lp = ListParams::default()
            .labels("training.kubeflow.org/job-role=launcher,training.kubeflow.org/job-name=pi");
        e.pods
            .list(&lp)
            .await
            .unwrap()
            .items
            .first()
            .map(|p| p.name_any())
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    e.kubelet.run(&launcher).await;
    e.wait_phase("pi", "Running").await;
    e.kubelet
        .terminate(&launcher, "mpi-launcher", &Termination::new(0, "Completed"))
        .await;
    let s = e.wait_phase("pi", "Succeeded").await;
    let kinds: Vec<(&str, &str, &str)> = s
        .conditions
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("Created", "True", "MPIJobCreated"),
            ("Running", "False", "MPIJobRunning"),
            ("Succeeded", "True", "MPIJobSucceeded")
        ]
    );
    assert!(s.conditions.iter().all(|c| c.last_update_time.is_some()
        && c.last_transition_time.is_some()
        && c.message.is_some()));
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert_eq!(s.replica_statuses["Launcher"].succeeded, 1);

    // The job whose policy only Kubeflow's schema let through gets our
    // validation event, and no status from us.
    e.wait_event("probe", "ValidationError: Found validation errors: spec.launcherCreationPolicy: unknown policy \"WaitForWorkers\": use AtStartup or WaitForWorkersReady").await;
    assert_eq!(
        jobs.get("probe").await.unwrap().status.as_ref(),
        Some(&full),
        "the controller left its status alone"
    );

    install_crd(&e.client, "crds/kubeflow.org_mpijobs.yaml").await;
}
