//! `crds/mpijob.yaml` is exactly what `mpijob-controller crd` prints, and it
//! stays small enough for a client-side `kubectl apply`.

use std::path::Path;

#[test]
fn committed_crds_are_fresh() {
    let generated = mpijob_api::crd::mpijob_yaml();
    for file in ["crds/mpijob.yaml", "deploy/crds.yaml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: regenerate it with\n  cargo run -p mpijob-controller -- crd > {file}\n\
             and then deploy/mpijob-operator.yaml (see deploy/README.md)"
        );
    }
}

#[test]
fn crd_fits_the_last_applied_annotation() {
    // kubectl apply (client-side) stores the whole object as JSON in an
    // annotation; annotations are limited to 256 KiB in total.
    let json = serde_json::to_string(&mpijob_api::crd::mpijob()).unwrap();
    assert!(
        json.len() < 128 * 1024,
        "CRD is {} bytes of JSON",
        json.len()
    );
}
