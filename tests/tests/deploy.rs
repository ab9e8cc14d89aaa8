//! `deploy/` is what users install: it is rendered from its parts, it
//! applies cleanly, its RBAC is minimal, and the controller runs a job end
//! to end authenticated as its ServiceAccount.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use mpijob_api::t9k::v1beta1::Phase;
use mpijob_api::MPIJob;
use mpijob_tests::cluster::repo_root;
use mpijob_tests::controller::{wait_for, RunningController};
use mpijob_tests::fixtures::{kubeflow_pi_job, pi_job};
use mpijob_tests::kubelet_stand_in::{KubeletStandIn, Termination};
use mpijob_tests::{crds, Harness, TestNamespace};
use serde_json::json;

const SA: &str = "system:serviceaccount:mpijob-system:mpijob-controller";

#[tokio::test]
async fn the_rendered_install_file_is_fresh() {
    let h = Harness::get();
    let rendered = h.kubectl_ok(&["kustomize", "deploy/"]);
    let committed =
        std::fs::read_to_string(repo_root().join("deploy/mpijob-operator.yaml")).unwrap();
    assert!(
        rendered == committed,
        "deploy/mpijob-operator.yaml is stale: regenerate it with\n  kubectl kustomize deploy/ > deploy/mpijob-operator.yaml\n(with the harness's kubectl: tests/cluster/README.md)"
    );
}

/// The controller's ServiceAccount token. Only the token is shared between
/// tests: a client belongs to the runtime of the test that made it.
static TOKEN: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Install deploy/ as a user would (once per test process: two concurrent
/// client-side applies of the same new objects would race), and return a
/// client that is the controller's ServiceAccount.
async fn install_and_become_the_controller(h: &Harness) -> Client {
    let token = TOKEN.get_or_init(|| install(h)).await.clone();
    let mut kubeconfig = Kubeconfig::read_from(&h.kubeconfig).unwrap();
    for user in &mut kubeconfig.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.token = Some(token.clone().into());
        }
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// Apply deploy/mpijob-operator.yaml and return the ServiceAccount's token.
async fn install(h: &Harness) -> String {
    let out = h.kubectl_ok(&["apply", "-f", "deploy/mpijob-operator.yaml"]);
    for what in [
        "customresourcedefinition.apiextensions.k8s.io/mpijobs.batch.tensorstack.dev",
        "serviceaccount/mpijob-controller",
        "clusterrole.rbac.authorization.k8s.io/mpijob-controller",
        "deployment.apps/mpijob-controller",
    ] {
        assert!(out.contains(what), "{what} missing from:\n{out}");
    }
    let admin = h.client().await;
    crds::wait_established(&admin, "mpijobs.batch.tensorstack.dev").await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "mpijob-system");
    let secret_name = wait_for(
        "the controller's token Secret",
        Duration::from_secs(30),
        || async {
            let sa = sas
                .get("mpijob-controller")
                .await
                .map_err(|e| e.to_string())?;
            sa.secrets
                .and_then(|s| s.first().and_then(|r| r.name.clone()))
                .ok_or_else(|| "no token secret yet".to_string())
        },
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(admin, "mpijob-system");
    let token = secrets.get(&secret_name).await.unwrap().data.unwrap()["token"]
        .0
        .clone();
    String::from_utf8(token).unwrap()
}

#[tokio::test]
async fn the_controller_runs_a_job_as_its_service_account() {
    let h = Harness::get();
    let as_controller = install_and_become_the_controller(&h).await;
    let admin = h.client().await;
    let ns = TestNamespace::new(&admin, &h, "deploy").await;
    // With leader election, as deploy/ runs it: the Lease RBAC is tested too.
    let lease = mpijob_controller::runtime::leader::LeaseConfig {
        namespace: "mpijob-system".into(),
        name: format!("mpijob-controller-{}", ns.name),
        identity: "deploy-test".into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(2),
    };
    let _c = RunningController::start_with(&as_controller, &ns.name, Some(lease));

    let jobs: Api<MPIJob> = Api::namespaced(admin.clone(), &ns.name);
    let mut job = pi_job("pi");
    job["spec"]["runPolicy"] = json!({"cleanUpWorkers": "all"});
    let job: MPIJob = serde_json::from_value(job).unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    let names = ["pi-launcher", "pi-worker-0", "pi-worker-1"];
    let t = Duration::from_secs(30);
    wait_for("the job's pods", t, || async {
        let n = pods.list(&ListParams::default()).await.unwrap().items.len();
        if n == 3 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await;
    let kubelet = KubeletStandIn::new(&admin, &ns.name);
    for n in names {
        kubelet.run(n).await;
    }
    let phase = |want: Phase| {
        let jobs = jobs.clone();
        move || {
            let jobs = jobs.clone();
            async move {
                let s = jobs.get("pi").await.unwrap().status.unwrap_or_default();
                if s.phase == Some(want) {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            }
        }
    };
    wait_for("Running", t, phase(Phase::Running)).await;
    kubelet
        .terminate(
            "pi-launcher",
            "mpi-worker",
            &Termination::new(0, "Completed"),
        )
        .await;
    wait_for("Succeeded", t, phase(Phase::Succeeded)).await;
    // Status, events and clean-up all went through with the RBAC in deploy/.
    wait_for("the workers to be deleted", t, || async {
        let left: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        if left == ["pi-launcher"] {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    let events = h.kubectl_ok(&["get", "events.events.k8s.io", "-n", &ns.name, "-o", "name"]);
    assert!(events.lines().count() >= 3, "{events}");

    // A Kubeflow job through the same controller: its ConfigMap, launcher
    // Job and clean-up need the rest of the RBAC.
    let kf: Api<mpijob_api::kubeflow::MPIJob> = Api::namespaced(admin.clone(), &ns.name);
    let job: mpijob_api::kubeflow::MPIJob = serde_json::from_value(kubeflow_pi_job("kf")).unwrap();
    kf.create(&PostParams::default(), &job).await.unwrap();
    let launcher = wait_for("the Kubeflow launcher pod", t, || async {
        let lp = ListParams::default()
            .labels("training.kubeflow.org/job-name=kf,training.kubeflow.org/job-role=launcher");
        pods.list(&lp)
            .await
            .unwrap()
            .items
            .first()
            .and_then(|p| p.metadata.name.clone())
            .ok_or_else(|| "none yet".to_string())
    })
    .await;
    for n in ["kf-worker-0", "kf-worker-1", launcher.as_str()] {
        kubelet.run(n).await;
    }
    kubelet
        .terminate(&launcher, "mpi-launcher", &Termination::new(0, "Completed"))
        .await;
    wait_for(
        "the Kubeflow job to succeed and its workers to go",
        t,
        || async {
            let s = kf.get("kf").await.unwrap().status.unwrap_or_default();
            let workers = pods
                .list(&ListParams::default().labels(
                    "training.kubeflow.org/job-name=kf,training.kubeflow.org/job-role=worker",
                ))
                .await
                .unwrap()
                .items
                .len();
            if s.is_true("Succeeded") && workers == 0 {
                Ok(())
            } else {
                Err(format!("{workers} workers, {s:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn the_controllers_rbac_is_minimal() {
    let h = Harness::get();
    install_and_become_the_controller(&h).await;
    let can = |verb: &str, what: &str| {
        let mut args = vec!["auth", "can-i", verb, "--as", SA, "-A"];
        // `resource/sub` names a subresource.
        match what.split_once('/') {
            Some((resource, sub)) => args.extend([resource, "--subresource", sub]),
            None => args.push(what),
        }
        let out = h.kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    for (verb, what) in [
        ("watch", "mpijobs.batch.tensorstack.dev"),
        ("patch", "mpijobs.batch.tensorstack.dev/status"),
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "secrets"),
        ("create", "services"),
        ("create", "events.events.k8s.io"),
        ("watch", "mpijobs.kubeflow.org"),
        ("patch", "mpijobs.kubeflow.org/status"),
        ("create", "configmaps"),
        ("patch", "configmaps"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
    ] {
        assert!(can(verb, what), "the controller needs to {verb} {what}");
    }
    for (verb, what) in [
        ("update", "mpijobs.batch.tensorstack.dev"),
        ("delete", "mpijobs.batch.tensorstack.dev"),
        ("delete", "secrets"),
        ("update", "secrets"),
        ("delete", "services"),
        ("update", "mpijobs.kubeflow.org"),
        ("delete", "configmaps"),
        ("update", "jobs.batch"),
        ("create", "pods/exec"),
        ("list", "nodes"),
        ("create", "deployments.apps"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
    ] {
        assert!(!can(verb, what), "the controller must not {verb} {what}");
    }
}
