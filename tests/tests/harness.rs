//! The harness is a real API server, and the committed CRD works on it:
//! kubectl and kube-rs both talk to it, the schema validates and prunes, and
//! the garbage collector deletes owned objects.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use mpijob_api::t9k::v1beta1::{MPIJob, MPIJobStatus, Phase};
use mpijob_tests::fixtures::pi_job;
use mpijob_tests::kubelet_stand_in::{KubeletStandIn, Termination};
use mpijob_tests::{crds, Harness, TestNamespace};
use serde_json::json;

#[tokio::test]
async fn kubectl_apply_installs_the_crd_and_it_becomes_established() {
    let h = Harness::get();
    let client = h.client().await;
    // Client-side apply, as a user would: it must fit the annotation limit.
    // Other tests install the CRD concurrently; if one creates it between
    // kubectl's read and its create, the second apply patches it instead.
    let first = h.kubectl(&["apply", "-f", "crds/"]);
    let raced = String::from_utf8_lossy(&first.stderr).contains("AlreadyExists");
    let out = if first.status.success() {
        String::from_utf8(first.stdout).unwrap()
    } else {
        assert!(
            raced,
            "kubectl apply -f crds/ failed: {}",
            String::from_utf8_lossy(&first.stderr)
        );
        h.kubectl_ok(&["apply", "-f", "crds/"])
    };
    assert!(out.contains("mpijobs.batch.tensorstack.dev"), "{out}");
    crds::wait_established(&client, "mpijobs.batch.tensorstack.dev").await;
}

/// `kubectl explain FIELD`, once the API server publishes `want` in it
/// (the OpenAPI document is republished shortly after a CRD changes).
async fn explain(h: &Harness, field: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let out = h.kubectl(&["explain", field]);
        last = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if out.status.success() && last.contains(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}

#[tokio::test]
async fn kubectl_explain_describes_the_worker_fields() {
    let h = Harness::get();
    crds::install(&h.client().await).await;
    let last = explain(&h, "mpijob.spec.worker", "extraMPIArgs").await;
    for field in [
        "cmd",
        "extraMPIArgs",
        "replicas",
        "template",
        "processesPerWorker",
        "processRecovery",
    ] {
        assert!(last.contains(field), "explain lacks {field}:\n{last}");
    }
    assert!(
        last.contains("The command mpirun starts on every slot"),
        "explain lacks the field descriptions:\n{last}"
    );
}

#[tokio::test]
async fn kubectl_explain_describes_the_2025_schema_and_the_run_modes() {
    let h = Harness::get();
    crds::install(&h.client().await).await;
    let config = explain(&h, "mpijob.spec.mpiConfig", "script").await;
    for field in ["home", "mca", "extraArgs", "script", "2025 schema"] {
        assert!(config.contains(field), "explain lacks {field}:\n{config}");
    }
    let replicas = explain(&h, "mpijob.spec.replicaSpecs", "template").await;
    for field in ["type", "replicas", "template", "launcher"] {
        assert!(
            replicas.contains(field),
            "explain lacks {field}:\n{replicas}"
        );
    }
}

#[tokio::test]
async fn every_example_is_accepted_by_the_api_server() {
    let h = Harness::get();
    let client = h.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::new(&client, &h, "examples").await;
    let out = h.kubectl_ok(&["apply", "-n", &ns.name, "-R", "-f", "examples/"]);
    // MPIJobs of both APIs; examples/plain/ adds a Service and pods.
    let created = out
        .lines()
        .filter(|l| l.starts_with("mpijob.") && l.contains("created"))
        .count();
    assert!(created >= 4, "{out}");
    let jobs: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);
    let listed = jobs.list(&ListParams::default()).await.unwrap();
    let kubeflow: Api<mpijob_api::kubeflow::MPIJob> = Api::namespaced(client.clone(), &ns.name);
    let kubeflow_listed = kubeflow.list(&ListParams::default()).await.unwrap();
    assert!(
        !kubeflow_listed.items.is_empty(),
        "no Kubeflow example in:\n{out}"
    );
    assert_eq!(listed.items.len() + kubeflow_listed.items.len(), created);
    // What the server stored validates with our own rules, too.
    for job in listed.items {
        mpijob_api::t9k::validate::validate_job(&job)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", job.metadata.name));
    }
    for job in kubeflow_listed.items {
        mpijob_api::kubeflow::resolve(&job)
            .unwrap_or_else(|e| panic!("{:?}: {e:?}", job.metadata.name));
    }
}

#[tokio::test]
async fn the_schema_rejects_wrong_types_with_the_servers_message() {
    let h = Harness::get();
    let client = h.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::new(&client, &h, "reject").await;
    let api: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);

    let mut bad = pi_job("bad-replicas");
    bad["spec"]["worker"]["replicas"] = json!("two");
    let bad: MPIJobLoose = serde_json::from_value(bad).unwrap();
    let err = create_raw(&client, &ns.name, &bad).await.unwrap_err();
    assert!(
        err.contains("spec.worker.replicas") && err.contains("must be of type integer"),
        "{err}"
    );

    let mut bad = pi_job("bad-type");
    bad["spec"]["runMode"] = json!({"debug": {"replicaSpecs": [{"type": "ps"}]}});
    let err = create_raw(&client, &ns.name, &serde_json::from_value(bad).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.contains("spec.runMode.debug.replicaSpecs")
            && err.contains(
                "Unsupported value: \"ps\": supported values: \"launcher\", \"master\", \"worker\""
            ),
        "{err}"
    );

    // Unknown fields under spec are pruned, not stored.
    let mut odd = pi_job("pruned");
    odd["spec"]["worker"]["processesPerNode"] = json!(9);
    odd["spec"]["bogus"] = json!({"a": 1});
    create_raw(&client, &ns.name, &serde_json::from_value(odd).unwrap())
        .await
        .unwrap();
    let raw = h.kubectl_ok(&["get", "mpijob", "pruned", "-n", &ns.name, "-o", "json"]);
    let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert!(stored["spec"].get("bogus").is_none(), "{stored}");
    assert!(
        stored["spec"]["worker"].get("processesPerNode").is_none(),
        "{stored}"
    );
    // Defaults from the schema were applied by the server.
    assert_eq!(
        stored["spec"]["ssh"]["sshdPath"], "/usr/sbin/sshd",
        "{stored}"
    );
    assert!(api.get("pruned").await.is_ok());
}

#[tokio::test]
async fn both_forms_of_clean_up_workers_are_stored_and_read_back() {
    let h = Harness::get();
    let client = h.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::new(&client, &h, "cleanup").await;
    let api: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);
    for (name, value, want) in [
        ("bool-true", json!(true), "all"),
        ("bool-false", json!(false), "none"),
        ("unfinished", json!("unfinished"), "unfinished"),
    ] {
        let mut j = pi_job(name);
        j["spec"]["runPolicy"] = json!({"cleanUpWorkers": value});
        create_raw(&client, &ns.name, &serde_json::from_value(j).unwrap())
            .await
            .unwrap();
        let got = api.get(name).await.unwrap();
        assert_eq!(
            mpijob_api::t9k::defaults::clean_up_workers(&got.spec).as_str(),
            want
        );
    }
    // A value that is neither form still loads, so that validation can
    // report it instead of breaking the list for every other job.
    let mut j = pi_job("neither");
    j["spec"]["runPolicy"] = json!({"cleanUpWorkers": "sometimes"});
    create_raw(&client, &ns.name, &serde_json::from_value(j).unwrap())
        .await
        .unwrap();
    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 4);
    let neither = all
        .items
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some("neither"))
        .unwrap();
    let errors = mpijob_api::t9k::validate::validate_job(neither).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "spec.runPolicy.cleanUpWorkers: must be true, false, \"all\", \"unfinished\" or \"none\", got \"sometimes\""
    );
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let h = Harness::get();
    let client = h.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::new(&client, &h, "columns").await;
    create_raw(
        &client,
        &ns.name,
        &serde_json::from_value(pi_job("cols")).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);
    let status = json!({"status": {"phase": "Running", "aggregate": {"creating": 0, "pending": 0, "running": 3, "succeeded": 0, "failed": 0, "unknown": 0, "deleted": 0}}});
    api.patch_status("cols", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let out = h.kubectl_ok(&["get", "mpijobs", "-n", &ns.name]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "WORKERS", "AGE"], "{out}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["cols", "Running", "2"], "{out}");
    let wide = h.kubectl_ok(&["get", "mj", "-n", &ns.name, "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("RUNNING"), "{wide}");
    // The category `all` includes MPIJobs.
    let all = h.kubectl_ok(&["get", "all", "-n", &ns.name]);
    assert!(all.contains("mpijob.batch.tensorstack.dev/cols"), "{all}");
}

#[tokio::test]
async fn deleting_an_owner_deletes_what_it_owns() {
    let h = Harness::get();
    let client = h.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::new(&client, &h, "gc").await;
    let jobs: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);
    let owner = create_raw(
        &client,
        &ns.name,
        &serde_json::from_value(pi_job("owner")).unwrap(),
    )
    .await
    .unwrap();
    let owner_ref = owner.controller_owner_ref(&()).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("owned".into());
    cm.metadata.owner_references = Some(vec![owner_ref]);
    cms.create(&PostParams::default(), &cm).await.unwrap();

    jobs.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    // The garbage collector rediscovers resource types every 30 s, so an
    // owner whose CRD was just installed can take that long to be seen.
    for _ in 0..900 {
        if cms.get_opt("owned").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the garbage collector did not delete the owned ConfigMap in 90 s");
}

#[tokio::test]
async fn kube_rs_lists_watches_creates_patches_and_writes_status() {
    let h = Harness::get();
    let client = h.client().await;
    crds::install(&client).await;
    let ns = TestNamespace::new(&client, &h, "kube-rs").await;
    let api: Api<MPIJob> = Api::namespaced(client.clone(), &ns.name);

    // Watch from the start, then create through the typed API.
    let mut events = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let typed: MPIJob = serde_json::from_value(pi_job("typed")).unwrap();
    api.create(&PostParams::default(), &typed).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), events.try_next())
        .await
        .expect("the watch delivers the new job within 20 s")
        .unwrap()
        .unwrap();
    assert_eq!(seen.metadata.name.as_deref(), Some("typed"));

    // Merge-patch the spec.
    let patch = json!({"spec": {"worker": {"replicas": 3}}});
    let patched = api
        .patch("typed", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(patched.spec.worker().replicas, 3);

    // Status only through the status subresource, with a merge patch.
    let status = MPIJobStatus {
        phase: Some(Phase::Failed),
        ..Default::default()
    };
    let written = api
        .patch_status(
            "typed",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .unwrap();
    assert_eq!(written.status.unwrap().phase, Some(Phase::Failed));
    // A status written through the main resource is ignored.
    let sneaky = json!({"status": {"phase": "Succeeded"}});
    api.patch("typed", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .unwrap();
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].status.as_ref().unwrap().phase,
        Some(Phase::Failed)
    );
}

#[tokio::test]
async fn the_kubelet_stand_in_moves_pods_through_their_phases() {
    let h = Harness::get();
    let client = h.client().await;
    let ns = TestNamespace::new(&client, &h, "stand-in").await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let kubelet = KubeletStandIn::new(&client, &ns.name);
    kubelet.run("p").await;
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    kubelet
        .terminate("p", "a", &Termination::new(137, "OOMKilled"))
        .await;
    let p = pods.get("p").await.unwrap();
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    kubelet
        .terminate("p", "b", &Termination::new(0, "Completed"))
        .await;
    let s = pods.get("p").await.unwrap().status.unwrap();
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let a = s
        .container_statuses
        .unwrap()
        .into_iter()
        .find(|c| c.name == "a")
        .unwrap();
    let t = a.state.unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
}

/// An MPIJob as raw JSON, so that tests can send what the typed API could
/// not express (a string where an integer belongs).
type MPIJobLoose = serde_json::Value;

async fn create_raw(client: &kube::Client, ns: &str, body: &MPIJobLoose) -> Result<MPIJob, String> {
    let ar = kube::api::ApiResource::erase::<MPIJob>(&());
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let obj: kube::api::DynamicObject = serde_json::from_value(body.clone()).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(created) => Ok(serde_json::from_value(serde_json::to_value(created).unwrap()).unwrap()),
        Err(e) => Err(e.to_string()),
    }
}
