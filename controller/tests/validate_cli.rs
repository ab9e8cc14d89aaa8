//! `mpijob-controller validate` reports each problem on its own line, and
//! its exit code says whether the manifests are valid.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mpijob-controller"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn a_valid_example_passes() {
    let pi = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pi/pi.yaml");
    let (code, out) = run(&["validate", "-f", pi]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("pi.yaml: valid MPIJob \"pi\" with 2 worker(s)\n"),
        "{out}"
    );
}

#[test]
fn an_invalid_manifest_names_every_field() {
    let dir = std::env::temp_dir().join(format!("mpijob-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata: {name: pi}\nspec:\n  mca: {\"-x\": y}\n  worker: {replicas: 0, cmd: [/opt/pi], template: {spec: {containers: [{name: mpi-worker, image: i}]}}}\n",
    )
    .unwrap();
    let (code, out) = run(&["validate", "-f", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().map(|l| l.split_once(": ").unwrap().1).collect();
    assert_eq!(
        lines,
        [
            "spec.worker.replicas: must be at least 1, got 0",
            "spec.mca: key \"-x\" must not start with '-': give the parameter name without dashes, e.g. pml",
        ]
    );
}

/// Kubeflow manifests validate under their own API: the project's example,
/// every `.yaml` in `dir` (at least two) and, as invalid, a bad one.
/// `label` keeps the scratch directory apart from other tests'.
fn kubeflow_manifests_are_checked(label: &str, dir: &str, missing: &str) {
    let ours = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/kubeflow/pi.yaml");
    let (code, out) = run(&["validate", "-f", ours]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.ends_with("pi.yaml: valid Kubeflow MPIJob \"pi\" with 2 worker(s)\n"),
        "{out}"
    );

    let files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}{missing}"))
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    let mut args = vec!["validate"];
    for f in &files {
        args.extend(["-f", f.as_str()]);
    }
    let (code, out) = run(&args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("valid Kubeflow MPIJob"))
            .count(),
        files.len(),
        "{out}"
    );

    let tmp =
        std::env::temp_dir().join(format!("mpijob-validate-kf-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bad = tmp.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata: {name: pi}\nspec:\n  mpiImplementation: openmpi\n  mpiReplicaSpecs:\n    Launcher: {template: {spec: {containers: [{name: l, image: i}]}}}\n    Worker: {replicas: 0, template: {spec: {containers: [{name: w, image: i}]}}}\n",
    )
    .unwrap();
    let (code, out) = run(&["validate", "-f", bad.to_str().unwrap()]);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(code, 1);
    let lines: Vec<&str> = out.lines().map(|l| l.split_once(": ").unwrap().1).collect();
    assert_eq!(
        lines,
        [
            "spec.mpiImplementation: unknown MPI implementation \"openmpi\": use OpenMPI, Intel or MPICH (the names are case-sensitive)",
            "spec.mpiReplicaSpecs.Worker.replicas: must be at least 1, got 0: set the number of workers, or remove the Worker entry for a launcher-only job",
        ]
    );
}

#[test]
fn kubeflow_manifests_are_checked_under_their_own_api() {
    kubeflow_manifests_are_checked(
        "fixtures",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/manifests/kubeflow"
        ),
        "",
    );
}

/// Real users' Kubeflow manifests, read where they lie beside the repo.
#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_kubeflow_manifests_are_checked_under_their_own_api() {
    kubeflow_manifests_are_checked(
        "peers",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/peers/kubeflow"),
        ": these tests need ../shared beside the repo",
    );
}
