//! A cluster with only the T9k CRD installed (no `mpijobs.kubeflow.org`):
//! the controller serves T9k jobs and says why it does not serve the other
//! API; asked for the missing API, it names the CRD and the file. This
//! binary deletes the Kubeflow CRD and puts it back at the end; cargo runs
//! test binaries one after another, and `crds::install` re-creates a
//! missing CRD, so no other test sees it gone.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::DeleteParams;
use kube::Api;
use mpijob_api::t9k::v1beta1::Phase;
use mpijob_api::MPIJob;
use mpijob_controller::runtime::{choose_apis, Served};
use mpijob_tests::controller::wait_for;
use mpijob_tests::fixtures::pi_job;
use mpijob_tests::{crds, Env};

/// Longer than the library's [`mpijob_tests::T`]: discovery has to catch up with the CRD.
const T: Duration = Duration::from_secs(60);
const KUBEFLOW_CRD: &str = "mpijobs.kubeflow.org";

#[tokio::test]
async fn with_only_the_t9k_crd_t9k_jobs_are_served() {
    let e = Env::<MPIJob>::new("single-crd").await;
    let client = &e.client;
    let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
    crd_api
        .delete(KUBEFLOW_CRD, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Kubeflow API to go from discovery", T, || async {
        match choose_apis(client, None).await {
            Ok(apis) if apis == [Served::T9k] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let asked = choose_apis(client, Some(&[Served::Kubeflow]))
        .await
        .unwrap_err();
    assert_eq!(
        asked.to_string(),
        "--apis asks for kubeflow.org/v2beta1 but CRD mpijobs.kubeflow.org is not installed: kubectl apply -f crds/kubeflow.org_mpijobs.yaml, or leave that API out of --apis"
    );

    let _c = e.controller();
    e.create(pi_job("pi")).await;
    for p in ["pi-launcher", "pi-worker-0", "pi-worker-1"] {
        wait_for(&format!("pod {p}"), T, || async {
            e.pods.get(p).await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
        e.kubelet.run(p).await;
    }
    e.wait_job::<MPIJob>("pi", Phase::Running, T).await;

    crds::install_file(client, "crds/kubeflow.org_mpijobs.yaml").await;
}
