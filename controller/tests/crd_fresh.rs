//! The committed CRDs are exactly what `mpijob-controller crd` prints, and
//! they stay small enough for a client-side `kubectl apply`.

use std::path::Path;

#[test]
fn committed_crds_are_fresh() {
    check_fresh(
        &mpijob_api::crd::mpijob_yaml(),
        "",
        &["crds/mpijob.yaml", "deploy/crds.yaml"],
    );
    check_fresh(
        &mpijob_api::crd::kubeflow_yaml(),
        " kubeflow",
        &[
            "crds/kubeflow.org_mpijobs.yaml",
            "deploy/crds-kubeflow.yaml",
        ],
    );
}

fn check_fresh(generated: &str, arg: &str, files: &[&str]) {
    for file in files {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: regenerate it with\n  cargo run -p mpijob-controller -- crd{arg} > {file}\n\
             and then deploy/mpijob-operator.yaml (see deploy/README.md)"
        );
    }
}

#[test]
fn crds_fit_the_last_applied_annotation() {
    // kubectl apply (client-side) stores the whole object as JSON in an
    // annotation; annotations are limited to 256 KiB in total.
    for crd in [mpijob_api::crd::mpijob(), mpijob_api::crd::kubeflow()] {
        let json = serde_json::to_string(&crd).unwrap();
        assert!(
            json.len() < 128 * 1024,
            "CRD {:?} is {} bytes of JSON",
            crd.metadata.name,
            json.len()
        );
    }
}
