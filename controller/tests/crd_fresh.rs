//! `crds/mpijob.yaml` is exactly what `mpijob-controller crd` prints, and it
//! stays small enough for a client-side `kubectl apply`.

use std::path::Path;

#[test]
fn committed_crd_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/mpijob.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = mpijob_api::crd::mpijob_yaml();
    assert!(
        committed == generated,
        "crds/mpijob.yaml is stale: regenerate it with\n  cargo run -p mpijob-controller -- crd > crds/mpijob.yaml"
    );
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
