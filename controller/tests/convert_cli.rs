//! `mpijob-controller convert`: the converted manifest on stdout passes
//! `validate`, and what could not be carried over is named on stderr.

use std::path::{Path, PathBuf};
use std::process::Command;

fn controller(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mpijob-controller"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// One of the project's own manifests under `tests/fixtures/manifests/`.
fn fixture(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/manifests")
        .join(rel);
    assert!(p.exists(), "{}: missing", p.display());
    p
}

/// A real user's manifest under `../shared/peers/` beside the repo, for the
/// `peer_` checks; panics, saying what is missing, without it.
fn peer(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/peers")
        .join(rel);
    assert!(
        p.exists(),
        "{}: this test needs ../shared beside the repo",
        p.display()
    );
    p
}

/// Every manifest of `inputs` (found with `path`) converts to both APIs,
/// and each output passes `validate`. `label` keeps the scratch directory
/// apart from other tests'.
fn every_manifest_converts_both_ways(label: &str, path: fn(&str) -> PathBuf, inputs: &[&str]) {
    let dir = std::env::temp_dir().join(format!("mpijob-convert-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for rel in inputs {
        for to in ["kubeflow.org/v2beta1", "batch.tensorstack.dev/v1beta1"] {
            let input = path(rel);
            let (code, out, err) =
                controller(&["convert", "-f", input.to_str().unwrap(), "--to", to]);
            assert_eq!(code, 0, "{rel} to {to}: {err}");
            assert!(
                out.contains(&format!("apiVersion: {to}")),
                "{rel} to {to}:\n{out}"
            );
            let file = dir.join("out.yaml");
            std::fs::write(&file, &out).unwrap();
            let (code, valid, _) = controller(&["validate", "-f", file.to_str().unwrap()]);
            assert_eq!(code, 0, "{rel} to {to}: {valid}\n{out}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_fixture_converts_both_ways_and_the_output_validates() {
    every_manifest_converts_both_ways(
        "fixtures",
        fixture,
        &[
            "kubeflow/openmpi.yaml",
            "kubeflow/mpich.yaml",
            "t9k/seed-repeated-run-policy.yaml",
            "t9k/seed-slots-gpus.yaml",
            "t9k/pre-2023-slots-gpus.yaml",
            "t9k/schema-2025.yaml",
        ],
    );
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_every_manifest_converts_both_ways_and_the_output_validates() {
    every_manifest_converts_both_ways(
        "peers",
        peer,
        &[
            "kubeflow/pi.yaml",
            "kubeflow/pi-mpich.yaml",
            "t9k/horovod-keras-job.yaml",
            "t9k/minigo-4gpu.yaml",
            "t9k/minigo-oldest-2022.yaml",
            "t9k/torch-mnist-t9ksched-2025.yaml",
        ],
    );
}

/// `input`, a Kubeflow manifest with `ttlSecondsAfterFinished` whose file
/// name is `name`, converts to T9k with that field named on stderr.
fn dropped_fields_are_named(input: &Path, name: &str) {
    let (code, out, err) = controller(&["convert", "-f", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("apiVersion: batch.tensorstack.dev/v1beta1"),
        "{out}"
    );
    assert!(
        err.lines().any(|l| l.ends_with(&format!(
            "{name}: spec.runPolicy.ttlSecondsAfterFinished: not carried over: T9k jobs are kept until deleted"
        ))),
        "{err}"
    );
}

#[test]
fn dropped_fields_are_named_on_stderr_with_the_reason() {
    dropped_fields_are_named(&fixture("kubeflow/openmpi.yaml"), "openmpi.yaml");
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_dropped_fields_are_named_on_stderr_with_the_reason() {
    dropped_fields_are_named(&peer("kubeflow/pi.yaml"), "pi.yaml");
}

#[test]
fn an_unconvertible_manifest_exits_1_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("mpijob-convert-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: kubeflow.org/v1alpha2\nkind: MPIJob\nmetadata: {name: x}\nspec: {mpiDistribution: lam}\n").unwrap();
    let (code, out, err) = controller(&["convert", "-f", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("spec.mpiDistribution: must be open_mpi, intel_mpi or mpich"),
        "{err}"
    );
}
