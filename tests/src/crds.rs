//! Installing the CRDs from `crds/` and waiting until they are Established.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::OnceCell;

use crate::cluster::repo_root;

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// The CRDs committed under `crds/`.
pub fn committed() -> Vec<CustomResourceDefinition> {
    let dir = repo_root().join("crds");
    let mut crds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let crd: CustomResourceDefinition = mpijob_api::yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            crds.push(crd);
        }
    }
    crds
}

/// Install (or update) the committed CRDs once per test process and wait
/// until each is Established.
pub async fn install(client: &Client) {
    INSTALLED
        .get_or_init(|| async {
            let api: Api<CustomResourceDefinition> = Api::all(client.clone());
            for crd in committed() {
                let name = crd.metadata.name.clone().expect("a CRD has a name");
                match api.get_opt(&name).await.unwrap() {
                    None => match api.create(&PostParams::default(), &crd).await {
                        Ok(_) => {}
                        // Created meanwhile by kubectl in another test.
                        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                        Err(e) => panic!("creating CRD {name}: {e}"),
                    },
                    Some(_) => {
                        let body = serde_json::json!({"spec": crd.spec});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                            .await
                            .unwrap_or_else(|e| panic!("updating CRD {name}: {e}"));
                    }
                }
                wait_established(client, &name).await;
            }
        })
        .await;
}

/// Wait until the CRD's Established condition is True.
pub async fn wait_established(client: &Client, name: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for _ in 0..300 {
        let crd = api.get(name).await.unwrap();
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("CRD {name} was not Established within 30 s");
}

/// Install the CRD in `file` (relative to the repository) unless it is
/// there, and wait until it is Established. Returns its name.
pub async fn install_file(client: &Client, file: &str) -> String {
    let path = repo_root().join(file);
    let crd: CustomResourceDefinition =
        mpijob_api::yaml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = crd.metadata.name.clone().expect("a CRD has a name");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => panic!("installing {}: {e}", path.display()),
    }
    wait_established(client, &name).await;
    name
}
