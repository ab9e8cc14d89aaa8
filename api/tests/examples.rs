//! Every manifest in `examples/` parses and validates under its API, and
//! between them the T9k ones use both published forms of `cleanUpWorkers`.

use std::path::{Path, PathBuf};

use mpijob_api::manifest;
use mpijob_api::t9k::defaults;
use mpijob_api::t9k::v1beta1::CleanUpWorkers;

/// The T9k examples (the Kubeflow ones are in `examples/kubeflow/`).
fn example_manifests() -> Vec<PathBuf> {
    all_manifests()
        .into_iter()
        .filter(|p| !is_kubeflow(p))
        .collect()
}

fn is_kubeflow(p: &Path) -> bool {
    let text = std::fs::read_to_string(p).unwrap();
    manifest::api_version_of(&text).as_deref() == Some(mpijob_api::kubeflow::API_VERSION)
}

fn all_manifests() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                // Plain Kubernetes objects, no MPIJob: tests/tests/e2e.rs
                // runs them on a real node.
                if !path.ends_with("plain") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_is_valid() {
    let manifests = all_manifests();
    assert!(manifests.len() >= 4, "found only {manifests:?}");
    assert!(
        manifests.iter().any(|p| is_kubeflow(p)),
        "no Kubeflow example"
    );
    for path in &manifests {
        let text = std::fs::read_to_string(path).unwrap();
        let checked = if is_kubeflow(path) {
            mpijob_api::kubeflow::parse(&text).map(|_| ())
        } else {
            manifest::parse(&text).map(|_| ())
        };
        if let Err(e) = checked {
            panic!("{}:\n{e}", path.display());
        }
    }
}

#[test]
fn the_examples_cover_the_features_they_document() {
    let jobs: Vec<_> = example_manifests()
        .iter()
        .map(|p| manifest::parse(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    let raw: Vec<String> = example_manifests()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(raw.iter().any(|t| t.contains("cleanUpWorkers: true")));
    assert!(raw.iter().any(|t| t.contains("cleanUpWorkers: all")));
    assert!(jobs
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some("pi")));
    assert!(jobs.iter().any(|j| defaults::debug_enabled(&j.spec)));
    assert!(jobs.iter().any(|j| {
        j.spec.mca.get("btl").map(String::as_str) == Some("^openib")
            && j.spec.mca.get("pml").map(String::as_str) == Some("ob1")
    }));
    let policies: Vec<_> = jobs
        .iter()
        .map(|j| defaults::clean_up_workers(&j.spec))
        .collect();
    for p in [
        CleanUpWorkers::All,
        CleanUpWorkers::Unfinished,
        CleanUpWorkers::None,
    ] {
        assert!(policies.contains(&p), "no example uses {p:?}");
    }
}
