//! `convert`: older Kubeflow versions to v2beta1, T9k and Kubeflow both
//! ways. Every output validates; what both APIs can express round-trips;
//! what cannot be carried over is named.

use std::path::PathBuf;

mod common;

use mpijob_api::convert::{convert, Converted, Target};
use mpijob_api::{manifest, slots, yaml, MPIJobSpec};
use serde_json::{json, Value};

fn to(text: &str, target: Target) -> Converted {
    convert(text, Some(target)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn noted(c: &Converted, field: &str) -> bool {
    c.notes.iter().any(|n| n.field == field)
}

/// A T9k spec for comparing meaning: without what Kubeflow cannot hold
/// (the run modes, the T9k scheduler) and processesPerWorker, which comes
/// back as `-N` and is compared through the slots.
fn comparable(spec: &MPIJobSpec) -> MPIJobSpec {
    let mut s = spec.clone();
    s.worker_mut().processes_per_worker = None;
    s.run_policy = Some(mpijob_api::t9k::v1beta1::RunPolicy {
        clean_up_workers: Some(mpijob_api::t9k::defaults::clean_up_workers(spec)),
    });
    s.run_mode = None;
    s.scheduler = None;
    s
}

fn slots_of(spec: &MPIJobSpec) -> u32 {
    let w = spec.worker();
    slots::of_valid(
        &w.extra_mpi_args,
        u32::try_from(w.replicas).unwrap(),
        w.processes_per_worker,
    )
}

/// T9k → Kubeflow → T9k keeps the job's meaning.
fn t9k_round_trip(text: &str) {
    let original = manifest::parse(text).unwrap();
    let kubeflow = to(text, Target::Kubeflow);
    let back = to(&kubeflow.yaml(), Target::T9k);
    let back = manifest::parse(&back.yaml()).unwrap();
    assert_eq!(slots_of(&back.spec), slots_of(&original.spec));
    // Pause is carried as Kubeflow's suspend.
    assert_eq!(
        mpijob_api::t9k::defaults::pause_enabled(&back.spec),
        mpijob_api::t9k::defaults::pause_enabled(&original.spec)
    );
    let want = comparable(&original.spec);
    let mut got = comparable(&back.spec);
    if original.spec.worker().processes_per_worker.is_some() {
        let n = original
            .spec
            .worker()
            .processes_per_worker
            .unwrap()
            .to_string();
        let args = &mut got.worker_mut().extra_mpi_args;
        assert_eq!(args[args.len() - 2..], ["-N".to_string(), n]);
        let len = args.len();
        args.truncate(len - 2);
    }
    assert_eq!(got, want, "{}", kubeflow.yaml());
    assert_eq!(back.metadata.name, original.metadata.name);
}

fn every_t9k_manifest_round_trips(read: fn(&str) -> String, files: &[&str]) {
    for file in files {
        t9k_round_trip(&read(file));
    }
}

#[test]
fn every_t9k_fixture_round_trips_through_kubeflow() {
    every_t9k_manifest_round_trips(
        |f| common::fixture(&format!("t9k/{f}")),
        &[
            "seed-repeated-run-policy.yaml",
            "seed-slots-gpus.yaml",
            "pre-2023-slots-gpus.yaml",
            "schema-2025.yaml",
        ],
    );
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_every_t9k_manifest_round_trips_through_kubeflow() {
    every_t9k_manifest_round_trips(
        |f| common::peer(&format!("t9k/{f}")),
        &[
            "horovod-keras-job.yaml",
            "minigo-4gpu.yaml",
            "minigo-oldest-2022.yaml",
            "torch-mnist-t9ksched-2025.yaml",
        ],
    );
}

#[test]
fn every_t9k_example_round_trips_through_kubeflow() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for rel in [
        "pi/pi.yaml",
        "pi/pi-2025.yaml",
        "pause.yaml",
        "debug.yaml",
        "horovod.yaml",
        "nonroot.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        t9k_round_trip(&text);
    }
}

/// What a Kubeflow manifest becomes in T9k's API.
struct AsT9k<'a> {
    file: &'a str,
    workers: i32,
    cmd: &'a [&'a str],
    ssh_auth_mount_path: &'a str,
    sshd_path: &'a str,
    /// Whether `ttlSecondsAfterFinished` is named as not carried over.
    ttl_noted: bool,
}

/// Each Kubeflow manifest of `cases`, read with `read`, converts to T9k as
/// its case says, and back to Kubeflow with its meaning kept.
fn kubeflow_manifests_convert_to_t9k_and_back(read: fn(&str) -> String, cases: &[AsT9k]) {
    for case in cases {
        let file = case.file;
        let text = read(file);
        let t9k = to(&text, Target::T9k);
        let job = manifest::parse(&t9k.yaml()).unwrap();
        let w = job.spec.worker();
        assert_eq!(w.replicas, case.workers, "{file}");
        assert_eq!(w.cmd, case.cmd, "{file}");
        assert_eq!(job.spec.ssh.ssh_auth_mount_path, case.ssh_auth_mount_path);
        assert_eq!(job.spec.ssh.sshd_path, case.sshd_path);
        // Its own launcher container (mpi-launcher) needs the 2025 schema.
        assert!(
            t9k.manifest["spec"].get("replicaSpecs").is_some(),
            "{}",
            t9k.yaml()
        );
        assert_eq!(
            noted(&t9k, "spec.runPolicy.ttlSecondsAfterFinished"),
            case.ttl_noted,
            "{:?}",
            t9k.notes
        );
        assert!(
            noted(
                &t9k,
                "spec.mpiReplicaSpecs.Worker.template.spec.containers[0].command"
            ),
            "{:?}",
            t9k.notes
        );

        let back = to(&t9k.yaml(), Target::Kubeflow);
        let original: Value = yaml::from_str(&text).unwrap();
        let b = &back.manifest["spec"];
        let o = &original["spec"];
        assert_eq!(b["slotsPerWorker"], o["slotsPerWorker"], "{file}");
        assert_eq!(b["sshAuthMountPath"], o["sshAuthMountPath"]);
        assert_eq!(
            b["runPolicy"]["cleanPodPolicy"],
            o["runPolicy"]["cleanPodPolicy"]
        );
        let launcher = |v: &Value| {
            let c = &v["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
            let mut argv: Vec<Value> = c["command"].as_array().cloned().unwrap_or_default();
            argv.extend(c["args"].as_array().cloned().unwrap_or_default());
            argv.retain(|a| a != "--allow-run-as-root");
            (
                argv,
                c["image"].clone(),
                c["securityContext"].clone(),
                c["resources"].clone(),
            )
        };
        assert_eq!(launcher(b), launcher(o), "{file}: {}", back.yaml());
        let worker = |v: &Value| {
            let mut t = v["mpiReplicaSpecs"]["Worker"].clone();
            let c = t["template"]["spec"]["containers"][0]
                .as_object_mut()
                .unwrap();
            c.remove("command");
            c.remove("args");
            t
        };
        assert_eq!(worker(b), worker(o), "{file}");
    }
}

#[test]
fn the_kubeflow_fixtures_convert_to_t9k_and_back() {
    let case = |file, ttl_noted| AsT9k {
        file,
        workers: 3,
        cmd: &["/home/mpiuser/bin/stencil2d", "--size", "2048"],
        ssh_auth_mount_path: "/home/mpiuser/.ssh",
        sshd_path: "/usr/sbin/sshd",
        ttl_noted,
    };
    kubeflow_manifests_convert_to_t9k_and_back(
        |f| common::fixture(&format!("kubeflow/{f}")),
        &[
            case("openmpi.yaml", true),
            AsT9k {
                cmd: &["/home/mpiuser/bin/stencil2d", "--size", "1024"],
                ..case("mpich.yaml", false)
            },
        ],
    );
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_the_kubeflow_manifests_convert_to_t9k_and_back() {
    let case = |file| AsT9k {
        file,
        workers: 2,
        cmd: &["/home/mpiuser/pi"],
        ssh_auth_mount_path: "/home/mpiuser/.ssh",
        sshd_path: "/usr/sbin/sshd",
        ttl_noted: file == "pi.yaml",
    };
    kubeflow_manifests_convert_to_t9k_and_back(
        |f| common::peer(&format!("kubeflow/{f}")),
        &[case("pi.yaml"), case("pi-mpich.yaml")],
    );
}

/// The seed-era v1alpha2 example: mpi-operator's TensorFlow benchmarks
/// job of that version, in its shape.
const V1ALPHA2: &str = r#"
apiVersion: kubeflow.org/v1alpha2
kind: MPIJob
metadata:
  name: tensorflow-benchmarks
spec:
  slotsPerWorker: 1
  cleanPodPolicy: Running
  backoffLimit: 3
  mainContainer: tensorflow-benchmarks
  mpiDistribution: open_mpi
  mpiReplicaSpecs:
    Launcher:
      replicas: 1
      template:
        spec:
          containers:
          - name: sidecar
            image: busybox
          - image: mpioperator/tensorflow-benchmarks:latest
            name: tensorflow-benchmarks
            command:
            - mpirun
            - --allow-run-as-root
            - -np
            - "2"
            - -bind-to
            - none
            - -map-by
            - slot
            - -x
            - NCCL_DEBUG=INFO
            - -mca
            - pml
            - ob1
            - python
            - scripts/tf_cnn_benchmarks/tf_cnn_benchmarks.py
            - --model=resnet101
    Worker:
      replicas: 2
      restartPolicy: ExitCode
      template:
        spec:
          containers:
          - image: mpioperator/tensorflow-benchmarks:latest
            name: tensorflow-benchmarks
            resources:
              limits:
                nvidia.com/gpu: 1
"#;

#[test]
fn the_seed_era_v1alpha2_example_converts_to_v2beta1_and_to_t9k() {
    let v2 = to(V1ALPHA2, Target::Kubeflow);
    let s = &v2.manifest["spec"];
    assert_eq!(v2.manifest["apiVersion"], "kubeflow.org/v2beta1");
    assert_eq!(
        s["runPolicy"],
        json!({"cleanPodPolicy": "Running", "backoffLimit": 3})
    );
    assert_eq!(s["mpiImplementation"], "OpenMPI");
    assert_eq!(s["mpiReplicaSpecs"]["Worker"]["restartPolicy"], "OnFailure");
    let launcher = &s["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"];
    assert_eq!(launcher[0]["name"], "tensorflow-benchmarks");
    assert_eq!(launcher[1]["name"], "sidecar");
    for field in [
        "spec.mainContainer",
        "spec.mpiReplicaSpecs.Worker.restartPolicy",
        "spec.mpiReplicaSpecs.Launcher.template.spec.containers[1]",
        "spec.mpiReplicaSpecs.Worker",
    ] {
        assert!(noted(&v2, field), "{field}: {:?}", v2.notes);
    }

    let t9k = to(V1ALPHA2, Target::T9k);
    let job = manifest::parse(&t9k.yaml()).unwrap();
    let w = job.spec.worker();
    assert_eq!(w.replicas, 2);
    assert_eq!(
        w.cmd,
        [
            "python",
            "scripts/tf_cnn_benchmarks/tf_cnn_benchmarks.py",
            "--model=resnet101"
        ]
    );
    assert_eq!(
        w.extra_mpi_args,
        [
            "--allow-run-as-root",
            "-np",
            "2",
            "-bind-to",
            "none",
            "-map-by",
            "slot",
            "-x",
            "NCCL_DEBUG=INFO"
        ]
    );
    assert_eq!(job.spec.mca["pml"], "ob1");
    assert!(
        noted(&t9k, "spec.runPolicy.backoffLimit"),
        "{:?}",
        t9k.notes
    );
}

#[test]
fn v1alpha1_units_spread_over_workers() {
    let text = r#"
apiVersion: kubeflow.org/v1alpha1
kind: MPIJob
metadata: {name: tf}
spec:
  gpus: 16
  gpusPerNode: 8
  backoffLimit: 1
  template:
    spec:
      containers:
      - name: tf
        image: tf:1
        command: [mpirun, python, train.py]
"#;
    let v2 = to(text, Target::Kubeflow);
    let s = &v2.manifest["spec"];
    assert_eq!(s["slotsPerWorker"], 8);
    assert_eq!(s["mpiReplicaSpecs"]["Worker"]["replicas"], 2);
    assert_eq!(s["runPolicy"]["backoffLimit"], 1);
    let worker = &s["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0];
    assert!(worker.get("command").is_none());
    // Fewer units than a node holds: one worker with all of them.
    let few = text.replace("gpus: 16", "gpus: 4");
    let s = to(&few, Target::Kubeflow).manifest["spec"].clone();
    assert_eq!(
        (
            s["slotsPerWorker"].clone(),
            s["mpiReplicaSpecs"]["Worker"]["replicas"].clone()
        ),
        (json!(4), json!(1))
    );
    // And to T9k: 8 slots a worker become -N 8.
    let t9k = manifest::parse(&to(text, Target::T9k).yaml()).unwrap();
    assert_eq!(slots_of(&t9k.spec), 8);
    assert_eq!(t9k.spec.worker().cmd, ["python", "train.py"]);
}

#[test]
fn field_mapping_cases() {
    // (what, T9k spec fields over pi, Kubeflow pointer, expected value)
    let cases: Vec<(&str, Value, &str, Value)> = vec![
        (
            "cleanUpWorkers all",
            json!({"runPolicy": {"cleanUpWorkers": "all"}}),
            "/spec/runPolicy/cleanPodPolicy",
            json!("All"),
        ),
        (
            "cleanUpWorkers true",
            json!({"runPolicy": {"cleanUpWorkers": true}}),
            "/spec/runPolicy/cleanPodPolicy",
            json!("All"),
        ),
        (
            "cleanUpWorkers unfinished",
            json!({"runPolicy": {"cleanUpWorkers": "unfinished"}}),
            "/spec/runPolicy/cleanPodPolicy",
            json!("Running"),
        ),
        (
            "cleanUpWorkers none",
            json!({"runPolicy": {"cleanUpWorkers": "none"}}),
            "/spec/runPolicy/cleanPodPolicy",
            json!("None"),
        ),
        (
            "pause",
            json!({"runMode": {"pause": {"enable": true}}}),
            "/spec/runPolicy/suspend",
            json!(true),
        ),
        (
            "sshAuthMountPath",
            json!({"ssh": {"sshAuthMountPath": "/home/u/.ssh"}}),
            "/spec/sshAuthMountPath",
            json!("/home/u/.ssh"),
        ),
        (
            "sshdPath",
            json!({"ssh": {"sshdPath": "/opt/ssh/sbin/sshd"}}),
            "/spec/mpiReplicaSpecs/Worker/template/spec/containers/0/command",
            json!(["/opt/ssh/sbin/sshd", "-De"]),
        ),
        (
            "mpiHome",
            json!({"mpiHome": "/opt/openmpi"}),
            "/spec/mpiReplicaSpecs/Launcher/template/spec/containers/0/command",
            json!(["/opt/openmpi/bin/mpirun"]),
        ),
        (
            "no mpiHome",
            json!({}),
            "/spec/mpiReplicaSpecs/Launcher/template/spec/containers/0/command",
            json!(["mpirun"]),
        ),
        (
            "mca, extra args and cmd",
            json!({"mca": {"btl": "^openib"}, "worker": {"extraMPIArgs": ["-N", "2"]}}),
            "/spec/mpiReplicaSpecs/Launcher/template/spec/containers/0/args",
            json!([
                "--mca",
                "btl",
                "^openib",
                "-N",
                "2",
                "/opt/mpi-examples/pi",
                "1000"
            ]),
        ),
        (
            "-N gives slots",
            json!({"worker": {"extraMPIArgs": ["-N", "3"]}}),
            "/spec/slotsPerWorker",
            json!(3),
        ),
        (
            "processesPerWorker gives slots",
            json!({"worker": {"processesPerWorker": 4}}),
            "/spec/slotsPerWorker",
            json!(4),
        ),
        (
            "workers",
            json!({"worker": {"replicas": 5}}),
            "/spec/mpiReplicaSpecs/Worker/replicas",
            json!(5),
        ),
        (
            "run as root",
            json!({}),
            "/spec/mpiReplicaSpecs/Launcher/template/spec/containers/0/env/0/name",
            json!("OMPI_ALLOW_RUN_AS_ROOT"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, extra, pointer, want) in &cases {
        let mut job = serde_json::json!({
            "apiVersion": "batch.tensorstack.dev/v1beta1", "kind": "MPIJob", "metadata": {"name": "pi"},
            "spec": {"worker": {"replicas": 2, "cmd": ["/opt/mpi-examples/pi", "1000"],
                "template": {"spec": {"containers": [{"name": "mpi-worker", "image": "pi:1"}]}}}}
        });
        merge(&mut job["spec"], extra);
        let text = yaml::to_string(&job).unwrap();
        let got = to(&text, Target::Kubeflow);
        if got.manifest.pointer(pointer) != Some(want) {
            failures.push(format!(
                "{what}: {pointer} is {:?}, want {want}",
                got.manifest.pointer(pointer)
            ));
        }
        t9k_round_trip(&text);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

#[test]
fn what_kubeflow_cannot_hold_is_named() {
    let text = r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: pi}
spec:
  scheduler: {t9kScheduler: {queue: default, priority: 50}}
  runMode:
    debug: {enable: true}
    pause: {enable: false, resumeSpecs: [{type: launcher, command: [x]}]}
  worker:
    cmd: [/opt/pi]
    template: {spec: {containers: [{name: sidecar, image: s}, {name: mpi-worker, image: pi:1}]}}
"#;
    let kf = to(text, Target::Kubeflow);
    for field in [
        "spec.scheduler.t9kScheduler",
        "spec.runMode.debug",
        "spec.runMode.pause.resumeSpecs",
        "spec.worker.template.spec.containers[1]",
        "spec.worker.template",
    ] {
        assert!(noted(&kf, field), "{field}: {:?}", kf.notes);
    }
    let c = &kf.manifest["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"];
    assert_eq!(c[0]["name"], "mpi-worker");
}

/// `kubeflow` (a Kubeflow manifest whose launcher's command is mpirun) with
/// horovodrun for mpirun cannot become T9k; nor can an unknown version.
fn a_launcher_that_does_not_run_mpirun_is_refused(kubeflow: &str) {
    let text = kubeflow.replace("- mpirun", "- horovodrun");
    assert_ne!(text, kubeflow);
    let e = convert(&text, Some(Target::T9k)).unwrap_err().to_string();
    assert!(
        e.starts_with("spec.mpiReplicaSpecs.Launcher.template.spec.containers[0].command: must start with mpirun"),
        "{e}"
    );
    let e = convert(
        "apiVersion: kubeflow.org/v9\nkind: MPIJob\nspec: {}\n",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("apiVersion: must be"), "{e}");
}

#[test]
fn a_launcher_that_does_not_run_mpirun_cannot_become_t9k() {
    a_launcher_that_does_not_run_mpirun_is_refused(&common::fixture("kubeflow/openmpi.yaml"));
}

#[test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
fn peer_a_launcher_that_does_not_run_mpirun_cannot_become_t9k() {
    a_launcher_that_does_not_run_mpirun_is_refused(&common::peer("kubeflow/pi.yaml"));
}
