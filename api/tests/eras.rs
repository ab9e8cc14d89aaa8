//! T9k's MPIJob comes in three schema eras: the seed schema, pre-2023
//! (`processesPerWorker`, `processRecovery`) and 2025 (`mpiConfig`,
//! `replicaSpecs`). Manifests of each validate (the project's fixtures,
//! and real users' in the `peer_` checks), and one job written in each era
//! means the same once normalised.

mod common;

use mpijob_api::t9k::defaults;
use mpijob_api::t9k::v1beta1::{CleanUpWorkers, MPIJob};
use mpijob_api::{manifest, slots};

fn parse(text: &str) -> MPIJob {
    manifest::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The slots each worker gets, as the controller and local mode compute
/// them.
fn slots_of(job: &MPIJob) -> u32 {
    let w = job.spec.worker();
    slots::of_valid(
        &w.extra_mpi_args,
        u32::try_from(w.replicas).unwrap(),
        w.processes_per_worker,
    )
}

/// Every manifest of `cases`, `(file, workers, slots, cmd[0])`, read with
/// `read`, validates and means what the table says.
fn every_era_validates(read: fn(&str) -> String, cases: &[(&str, i32, u32, &str)]) {
    for &(file, workers, slots, cmd0) in cases {
        let job = parse(&read(file));
        let w = job.spec.worker();
        assert_eq!(w.replicas, workers, "{file}");
        assert_eq!(slots_of(&job), slots, "{file}");
        assert_eq!(w.cmd[0], cmd0, "{file}");
        assert_eq!(
            defaults::clean_up_workers(&job.spec),
            CleanUpWorkers::All,
            "{file}"
        );
        assert!(job.spec.mpi_config.is_none() && job.spec.replica_specs.is_empty());
    }
}

#[test]
fn every_fixture_manifest_of_every_era_validates() {
    every_era_validates(
        |f| common::fixture(&format!("t9k/{f}")),
        &[
            ("seed-repeated-run-policy.yaml", 3, 2, "python3"),
            ("seed-slots-gpus.yaml", 3, 4, "python3"),
            ("pre-2023-slots-gpus.yaml", 3, 4, "python3"),
            ("schema-2025.yaml", 3, 2, "python3"),
        ],
    );
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_every_manifest_of_every_era_validates() {
    every_era_validates(
        |f| common::peer(&format!("t9k/{f}")),
        &[
            ("horovod-keras-job.yaml", 4, 1, "python"),
            ("minigo-4gpu.yaml", 4, 9, "python"),
            ("minigo-oldest-2022.yaml", 4, 9, "python"),
            ("torch-mnist-t9ksched-2025.yaml", 4, 1, "python"),
        ],
    );
}

/// What a 2025-schema manifest says, in the seed schema's fields.
struct Of2025<'a> {
    mpi_home: &'a str,
    mca: &'a [(&'a str, &'a str)],
    extra_mpi_args: &'a [&'a str],
    cmd: &'a [&'a str],
    image: &'a str,
}

fn the_2025_schema_means(text: &str, want: &Of2025) {
    let job = parse(text);
    let s = &job.spec;
    assert_eq!(s.mpi_home.as_deref(), Some(want.mpi_home));
    for (k, v) in want.mca {
        assert_eq!(s.mca[*k], *v);
    }
    assert_eq!(s.worker().extra_mpi_args, want.extra_mpi_args);
    assert_eq!(s.worker().cmd, want.cmd);
    let image =
        |t: &mpijob_api::template::PodTemplate| t.0.pointer("/spec/containers/0/image").cloned();
    assert_eq!(image(&s.worker().template).unwrap(), want.image);
    // `template: {}`: the launcher runs in the workers' template.
    assert_eq!(s.launcher_template(), &s.worker().template);
}

#[test]
fn the_2025_schema_means_what_the_seed_schema_says() {
    the_2025_schema_means(
        &common::fixture("t9k/schema-2025.yaml"),
        &Of2025 {
            mpi_home: "/opt/openmpi",
            mca: &[("pml", "ob1"), ("btl_base_warn_component_unused", "0")],
            extra_mpi_args: &[
                "-N",
                "2",
                "--enable-recovery",
                "--max-restarts",
                "4",
                "--allow-run-as-root",
            ],
            cmd: &["python3", "fold.py", "--config", "configs/small.yaml"],
            image: "registry.example.com/bio/fold:0.9.1",
        },
    );
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_the_2025_schema_means_what_the_seed_schema_says() {
    the_2025_schema_means(
        &common::peer("t9k/torch-mnist-t9ksched-2025.yaml"),
        &Of2025 {
            mpi_home: "/usr/local",
            mca: &[("btl", "^openib"), ("pml", "ob1")],
            extra_mpi_args: &[
                "-N",
                "1",
                "--enable-recovery",
                "--max-restarts",
                "100",
                "--allow-run-as-root",
            ],
            cmd: &["python", "torch_mnist_mpijob.py", "--log_dir", "log"],
            image: "t9kpublic/horovod:sdk-0.5.2",
        },
    );
}

/// A pre-2023 manifest: `processesPerWorker` gives the slots, and
/// `processRecovery` becomes mpirun flags ahead of `extraMPIArgs`.
fn pre_2023_becomes(text: &str, processes: i32, slots: u32, extra_mpi_args: &[&str]) {
    let job = parse(text);
    let w = job.spec.worker();
    assert_eq!(w.processes_per_worker, Some(processes));
    assert_eq!(slots_of(&job), slots);
    assert_eq!(w.extra_mpi_args, extra_mpi_args);
    assert!(w.process_recovery.is_none());
}

#[test]
fn pre_2023_processes_and_recovery_become_slots_and_mpirun_flags() {
    pre_2023_becomes(
        &common::fixture("t9k/pre-2023-slots-gpus.yaml"),
        4,
        4,
        &[
            "--enable-recovery",
            "--max-restarts",
            "3",
            "--bind-to",
            "none",
            "--oversubscribe",
        ],
    );
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_pre_2023_processes_and_recovery_become_slots_and_mpirun_flags() {
    pre_2023_becomes(
        &common::peer("t9k/minigo-oldest-2022.yaml"),
        9,
        9,
        &["--enable-recovery", "--max-restarts", "0"],
    );
}

#[test]
fn one_job_in_each_era_normalises_to_one_spec() {
    let seed = r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: pi}
spec:
  mca: {btl: ^openib}
  mpiHome: /usr
  runPolicy: {cleanUpWorkers: all}
  worker:
    replicas: 3
    extraMPIArgs: [--enable-recovery, --max-restarts, "2", -N, "2"]
    cmd: [/opt/pi]
    template: {spec: {containers: [{name: mpi-worker, image: pi:1}]}}
"#;
    let pre_2023 = r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: pi}
spec:
  mca: {btl: ^openib}
  mpiHome: /usr
  runPolicy: {cleanUpWorkers: true}
  worker:
    replicas: 3
    processesPerWorker: 2
    processRecovery: {enable: true, limit: 2}
    extraMPIArgs: [-N, "2"]
    cmd: [/opt/pi]
    template: {spec: {containers: [{name: mpi-worker, image: pi:1}]}}
"#;
    let of_2025 = r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: pi}
spec:
  mpiConfig:
    home: /usr
    mca: {btl: ^openib}
    extraArgs: [--enable-recovery, --max-restarts, "2", -N, "2"]
    script: [/opt/pi]
  runPolicy: {cleanUpWorkers: true}
  replicaSpecs:
    - type: worker
      replicas: 3
      template: {spec: {containers: [{name: mpi-worker, image: pi:1}]}}
"#;
    let seed = parse(seed);
    let mut pre = parse(pre_2023);
    let new = parse(of_2025);
    assert_eq!(seed.spec, new.spec);
    assert_eq!(slots_of(&pre), 2);
    pre.spec.worker_mut().processes_per_worker = None;
    assert_eq!(seed.spec, pre.spec);
    // Normalising again changes nothing.
    let mut again = new.spec.clone();
    defaults::normalize(&mut again);
    assert_eq!(again, new.spec);
}

#[test]
fn a_launcher_with_its_own_template_keeps_it() {
    let job = parse(
        r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: pi}
spec:
  mpiConfig: {script: [/opt/pi]}
  replicaSpecs:
    - type: master
      template: {spec: {containers: [{name: mpi-worker, image: launcher:1}]}}
    - type: worker
      replicas: 2
      template: {spec: {containers: [{name: mpi-worker, image: worker:1}]}}
"#,
    );
    let image = |t: &mpijob_api::template::PodTemplate| {
        t.0.pointer("/spec/containers/0/image").cloned().unwrap()
    };
    assert_eq!(image(job.spec.launcher_template()), "launcher:1");
    assert_eq!(image(&job.spec.worker().template), "worker:1");
}

/// A seed-era manifest `text` that gives `runPolicy` twice, both times
/// `cleanUpWorkers: true`, the first just before `worker`.
fn a_repeated_run_policy_is_named(text: &str) {
    assert_eq!(
        manifest::warnings(text),
        ["spec.runPolicy: given 2 times; the last one is used, {\"cleanUpWorkers\":true}, as the API server keeps the last (the values are the same): keep one"]
    );
    let differing = text.replacen(
        "runPolicy:\n    cleanUpWorkers: true\n  worker",
        "runPolicy:\n    cleanUpWorkers: false\n  worker",
        1,
    );
    assert_ne!(differing, text);
    assert_eq!(
        manifest::warnings(&differing),
        ["spec.runPolicy: given 2 times; the last one is used, {\"cleanUpWorkers\":true}, as the API server keeps the last (dropped: {\"cleanUpWorkers\":false}): keep one"]
    );
    let job = parse(&differing);
    assert_eq!(defaults::clean_up_workers(&job.spec), CleanUpWorkers::All);
}

#[test]
fn a_repeated_run_policy_is_named_with_the_one_that_wins() {
    a_repeated_run_policy_is_named(&common::fixture("t9k/seed-repeated-run-policy.yaml"));
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_a_repeated_run_policy_is_named_with_the_one_that_wins() {
    a_repeated_run_policy_is_named(&common::peer("t9k/horovod-keras-job.yaml"));
}
