//! T9k's MPIJob comes in three schema eras: the seed schema, pre-2023
//! (`processesPerWorker`, `processRecovery`) and 2025 (`mpiConfig`,
//! `replicaSpecs`). Real manifests of each validate, and one job written in
//! each era means the same once normalised.

mod common;

use mpijob_api::v1beta1::{CleanUpWorkers, MPIJob};
use mpijob_api::{defaults, manifest, slots};

/// A real user's manifest from `../shared/peers/t9k/`.
fn peer(name: &str) -> String {
    common::shared(&format!("peers/t9k/{name}"))
}
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

#[test]
fn every_peer_manifest_of_every_era_validates() {
    for (file, workers, slots, cmd0) in [
        ("horovod-keras-job.yaml", 4, 1, "python"),
        ("minigo-4gpu.yaml", 4, 9, "python"),
        ("minigo-oldest-2022.yaml", 4, 9, "python"),
        ("torch-mnist-t9ksched-2025.yaml", 4, 1, "python"),
    ] {
        let job = parse(&peer(file));
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
fn the_2025_schema_means_what_the_seed_schema_says() {
    let job = parse(&peer("torch-mnist-t9ksched-2025.yaml"));
    let s = &job.spec;
    assert_eq!(s.mpi_home.as_deref(), Some("/usr/local"));
    assert_eq!(s.mca["btl"], "^openib");
    assert_eq!(s.mca["pml"], "ob1");
    assert_eq!(
        s.worker().extra_mpi_args,
        [
            "-N",
            "1",
            "--enable-recovery",
            "--max-restarts",
            "100",
            "--allow-run-as-root"
        ]
    );
    assert_eq!(
        s.worker().cmd,
        ["python", "torch_mnist_mpijob.py", "--log_dir", "log"]
    );
    let image =
        |t: &mpijob_api::template::PodTemplate| t.0.pointer("/spec/containers/0/image").cloned();
    assert_eq!(
        image(&s.worker().template).unwrap(),
        "t9kpublic/horovod:sdk-0.5.2"
    );
    // `template: {}`: the launcher runs in the workers' template.
    assert_eq!(s.launcher_template(), &s.worker().template);
}

#[test]
fn pre_2023_processes_and_recovery_become_slots_and_mpirun_flags() {
    let job = parse(&peer("minigo-oldest-2022.yaml"));
    let w = job.spec.worker();
    assert_eq!(w.processes_per_worker, Some(9));
    assert_eq!(slots_of(&job), 9);
    assert_eq!(
        w.extra_mpi_args,
        ["--enable-recovery", "--max-restarts", "0"]
    );
    assert!(w.process_recovery.is_none());
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

#[test]
fn a_repeated_run_policy_is_named_with_the_one_that_wins() {
    let text = peer("horovod-keras-job.yaml");
    assert_eq!(
        manifest::warnings(&text),
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
