//! Every manifest in `examples/` parses and validates, and between them they
//! use both published forms of `cleanUpWorkers`.

use std::path::{Path, PathBuf};

use mpijob_api::{defaults, manifest, v1beta1::CleanUpWorkers};

fn example_manifests() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut found = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
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
    let manifests = example_manifests();
    assert!(manifests.len() >= 3, "found only {manifests:?}");
    for path in &manifests {
        let text = std::fs::read_to_string(path).unwrap();
        if let Err(e) = manifest::parse(&text) {
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
