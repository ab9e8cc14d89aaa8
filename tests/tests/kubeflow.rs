//! Kubeflow `kubeflow.org/v2beta1` MPIJobs against the real API server, with
//! the real Job controller running the launcher Jobs and the kubelet
//! stand-in moving the pods: the objects created, the status and events at
//! each step, and mpi-operator's integration cases (success,
//! WaitForWorkersReady, suspend/resume, launcher failure, eviction,
//! managedBy, invalid spec, name clash, restart, deletion), plus both APIs
//! in one controller.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use mpijob_api::kubeflow::{JobStatus, MPIJob};
use mpijob_tests::controller::wait_for;
use mpijob_tests::fixtures::{kubeflow_pi_job, pi_job};
use mpijob_tests::kubelet_stand_in::Termination;
use mpijob_tests::{crds, merge, Harness, T};
use serde_json::{json, Value};

type Env = mpijob_tests::Env<MPIJob>;

/// `kubeflow_pi_job(name)` with `patch` merged into it.
fn job(name: &str, patch: Value) -> Value {
    let mut j = kubeflow_pi_job(name);
    merge(&mut j, patch);
    j
}

/// What only these tests do with a Kubeflow job's [`Env`].
trait KubeflowEnv {
    /// Wait for condition `type_` to have `status` (True or False).
    async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> JobStatus;
    /// The pods not being deleted.
    async fn pod_names(&self) -> BTreeSet<String>;
    async fn wait_workers(&self, names: &[&str]);
    /// The launcher pod the Job controller made.
    async fn launcher_pod(&self, job: &str) -> String;
    /// The batch/v1 Jobs.
    async fn job_names(&self) -> Vec<String>;
}

impl KubeflowEnv for Env {
    async fn wait_condition(&self, name: &str, type_: &str, status: &str) -> JobStatus {
        wait_for(&format!("{name} {type_}={status}"), T, || async {
            let s = self.status(name).await;
            match s.condition(type_) {
                Some(c) if c.status == status => Ok(s),
                _ => Err(format!("{s:?}")),
            }
        })
        .await
    }

    async fn pod_names(&self) -> BTreeSet<String> {
        let pods = self.pods.list(&ListParams::default()).await.unwrap();
        pods.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect()
    }

    async fn wait_workers(&self, names: &[&str]) {
        let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        wait_for(&format!("worker pods {want:?}"), T, || async {
            let got: BTreeSet<String> = self
                .pod_names()
                .await
                .into_iter()
                .filter(|n| n.contains("-worker-"))
                .collect();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await
    }

    async fn launcher_pod(&self, job: &str) -> String {
        wait_for(&format!("{job}'s launcher pod"), T, || async {
            let lp = ListParams::default().labels(&format!(
                "training.kubeflow.org/job-name={job},training.kubeflow.org/job-role=launcher"
            ));
            let pods = self.pods.list(&lp).await.unwrap();
            pods.items
                .iter()
                .find(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .ok_or_else(|| "none yet".to_string())
        })
        .await
    }

    async fn job_names(&self) -> Vec<String> {
        self.api::<Job>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|j| j.name_any())
            .collect()
    }
}

fn reasons(s: &JobStatus) -> Vec<(String, String, String)> {
    s.conditions
        .iter()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

/// What a Kubeflow manifest in the shape of mpi-operator's pi example for
/// Open MPI says, for the checks of [`a_pi_shaped_example_succeeds`].
struct PiShaped<'a> {
    name: &'a str,
    workers: i32,
    slots_per_worker: u32,
    /// The worker container's command and args: the image's sshd.
    worker_argv: &'a [&'a str],
    ssh_auth_mount_path: &'a str,
    launcher_container: &'a str,
    launcher_command: &'a [&'a str],
}

/// The Kubeflow manifest at `example`, applied with kubectl: mpi-operator's
/// objects, the wait init container, and the status moving with the pods
/// to Succeeded.
async fn a_pi_shaped_example_succeeds(prefix: &str, example: &std::path::Path, want: PiShaped<'_>) {
    let e = Env::new(prefix).await;
    let _c = e.controller();
    e.harness
        .kubectl_ok(&["apply", "-n", &e.ns.name, "-f", example.to_str().unwrap()]);
    let name = want.name;
    let workers: Vec<String> = (0..want.workers)
        .map(|i| format!("{name}-worker-{i}"))
        .collect();
    let worker_refs: Vec<&str> = workers.iter().map(String::as_str).collect();
    e.wait_workers(&worker_refs).await;
    let ns = &e.ns.name;
    let uid = e.jobs.get(name).await.unwrap().uid().unwrap();
    let owned = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.iter().any(|o| {
            o.uid == uid
                && o.controller == Some(true)
                && o.kind == "MPIJob"
                && o.api_version == "kubeflow.org/v2beta1"
        })
    };

    let svc = e.api::<Service>().get(name).await.unwrap();
    assert!(owned(svc.owner_references()));
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_ne!(
        spec.publish_not_ready_addresses,
        Some(true),
        "only with runLauncherAsWorker"
    );
    let sel = spec.selector.unwrap();
    assert_eq!(sel["training.kubeflow.org/operator-name"], "mpi-operator");
    assert_eq!(sel["training.kubeflow.org/job-name"], name);

    let config = format!("{name}-config");
    let cm = e.api::<ConfigMap>().get(&config).await.unwrap();
    assert!(owned(cm.owner_references()));
    assert_eq!(cm.labels()["app"], name);
    let data = cm.data.unwrap();
    let slots = want.slots_per_worker;
    assert_eq!(
        data["hostfile"],
        workers
            .iter()
            .map(|w| format!("{w}.{name}.{ns}.svc slots={slots}\n"))
            .collect::<String>()
    );
    assert_eq!(data["discover_hosts.sh"], "#!/bin/sh\n");

    let secret = e.api::<Secret>().get(&format!("{name}-ssh")).await.unwrap();
    assert!(owned(secret.owner_references()));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/ssh-auth"));
    let keys: BTreeSet<&str> = secret
        .data
        .as_ref()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["ssh-privatekey", "ssh-publickey"]));

    let last = workers.last().unwrap();
    let w = e.pods.get(last).await.unwrap();
    assert!(owned(w.owner_references()));
    let l = w.labels();
    assert_eq!(l["training.kubeflow.org/job-role"], "worker");
    assert_eq!(
        l["training.kubeflow.org/replica-index"],
        (want.workers - 1).to_string()
    );
    let ws = w.spec.unwrap();
    assert_eq!(
        (ws.hostname.as_deref(), ws.subdomain.as_deref()),
        (Some(last.as_str()), Some(name))
    );
    let wc = &ws.containers[0];
    let guarded: Vec<&str> = ["/opt/mpijob/mpijob-agent", "guard", "--"]
        .into_iter()
        .chain(want.worker_argv.iter().copied())
        .collect();
    assert_eq!(
        wc.command.as_ref().unwrap(),
        &guarded,
        "the user's command and args, word for word, under the agent's guard"
    );
    assert_eq!(wc.args, None);
    let init = ws.init_containers.as_ref().unwrap();
    assert_eq!(init[0].name, "mpijob-agent-install");
    assert!(wc
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .any(|m| m.name == "ssh-auth" && m.mount_path == want.ssh_auth_mount_path));

    // AtStartup: the launcher Job exists at once, with the wait init container.
    let launcher = e
        .api::<Job>()
        .get(&format!("{name}-launcher"))
        .await
        .unwrap();
    assert!(owned(launcher.owner_references()));
    let ls = launcher.spec.unwrap();
    let lt = ls.template.spec.unwrap();
    assert_eq!(
        lt.init_containers.as_ref().unwrap()[0].name,
        "mpijob-wait-for-workers"
    );
    assert_eq!(
        lt.containers[0].command.as_ref().unwrap(),
        want.launcher_command
    );
    let s = e.wait_condition(name, "Created", "True").await;
    assert!(s.start_time.is_some());
    assert_eq!(
        s.condition("Created").unwrap().message.as_deref(),
        Some(&*format!("MPIJob {ns}/{name} is created."))
    );

    // The workers run: discover_hosts.sh lists them.
    for w in &workers {
        e.kubelet.run(w).await;
    }
    let listed: String = workers
        .iter()
        .map(|w| format!("echo {w}.{name}.{ns}.svc\n"))
        .collect();
    wait_for("discover_hosts.sh to list every worker", T, || async {
        let cm = e.api::<ConfigMap>().get(&config).await.unwrap();
        let script = cm.data.unwrap()["discover_hosts.sh"].clone();
        if script == format!("#!/bin/sh\n{listed}") {
            Ok(())
        } else {
            Err(script)
        }
    })
    .await;

    // The launcher runs: Running.
    let lp = e.launcher_pod(name).await;
    e.kubelet.run(&lp).await;
    let s = e.wait_condition(name, "Running", "True").await;
    assert_eq!(s.replica_statuses["Launcher"].active, 1);
    assert_eq!(s.replica_statuses["Worker"].active, want.workers);

    // mpirun exits 0: the Job completes, the job Succeeded, and the running
    // workers go (cleanPodPolicy Running).
    e.kubelet
        .terminate(
            &lp,
            want.launcher_container,
            &Termination::new(0, "Completed"),
        )
        .await;
    let s = e.wait_condition(name, "Succeeded", "True").await;
    assert!(s.completion_time.is_some());
    assert_eq!(
        reasons(&s),
        [
            c("Created", "True", "MPIJobCreated"),
            c("Running", "False", "MPIJobRunning"),
            c("Succeeded", "True", "MPIJobSucceeded")
        ]
    );
    e.wait_workers(&[]).await;
    wait_for("the worker count to drop to 0", T, || async {
        let s = e.status(name).await;
        if s.replica_statuses["Worker"].active == 0 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(s.replica_statuses["Launcher"].succeeded, 1);
    e.wait_event(
        name,
        &format!("MPIJobSucceeded: MPIJob {ns}/{name} successfully completed."),
    )
    .await;
    let events = e.events(name).await;
    assert_eq!(
        events,
        [
            format!("MPIJobCreated: MPIJob {ns}/{name} is created."),
            format!("MPIJobRunning: MPIJob {ns}/{name} is running."),
            format!("MPIJobSucceeded: MPIJob {ns}/{name} successfully completed."),
        ]
    );
}

/// The project's Kubeflow Open MPI fixture (`tests/fixtures/manifests/`),
/// in the shape of mpi-operator's pi example: 3 workers of 2 slots.
#[tokio::test]
async fn a_kubeflow_open_mpi_manifest_gets_mpi_operators_objects_and_succeeds() {
    a_pi_shaped_example_succeeds(
        "kf-ompi",
        &mpijob_tests::fixtures::fixture_path("kubeflow/openmpi.yaml"),
        PiShaped {
            name: "stencil",
            workers: 3,
            slots_per_worker: 2,
            worker_argv: &["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"],
            ssh_auth_mount_path: "/home/mpiuser/.ssh",
            launcher_container: "mpi-launcher",
            launcher_command: &["mpirun"],
        },
    )
    .await;
}

/// mpi-operator's own example, read where it lies beside the repo.
#[tokio::test]
#[ignore = "reads ../shared/peers: scripts/test.sh runs it when that folder is there"]
async fn peer_the_kubeflow_pi_example_gets_mpi_operators_objects_and_succeeds() {
    a_pi_shaped_example_succeeds(
        "kf-pi",
        &mpijob_tests::fixtures::peer_path("kubeflow/pi.yaml"),
        PiShaped {
            name: "pi",
            workers: 2,
            slots_per_worker: 1,
            worker_argv: &["/usr/sbin/sshd", "-De", "-f", "/home/mpiuser/.sshd_config"],
            ssh_auth_mount_path: "/home/mpiuser/.ssh",
            launcher_container: "mpi-launcher",
            launcher_command: &["mpirun"],
        },
    )
    .await;
}

#[tokio::test]
async fn wait_for_workers_ready_creates_the_launcher_only_when_every_worker_is_ready() {
    let e = Env::new("kf-wait").await;
    let _c = e.controller();
    e.create(job(
        "pi",
        json!({"spec": {"launcherCreationPolicy": "WaitForWorkersReady"}}),
    ))
    .await;
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    e.kubelet.run("pi-worker-0").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        e.job_names().await,
        Vec::<String>::new(),
        "one worker is not Ready yet"
    );
    e.kubelet.run("pi-worker-1").await;
    wait_for("the launcher Job", T, || async {
        let names = e.job_names().await;
        if names == ["pi-launcher"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
}

/// mpi-operator #615: after a resume, WaitForWorkersReady must wait for
/// the new workers again, not start the launcher at once.
#[tokio::test]
async fn resuming_under_wait_for_workers_ready_waits_for_the_workers_again() {
    let e = Env::new("kf-615").await;
    let _c = e.controller();
    e.create(job(
        "pi",
        json!({"spec": {"launcherCreationPolicy": "WaitForWorkersReady"}}),
    ))
    .await;
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    e.kubelet.run("pi-worker-0").await;
    e.kubelet.run("pi-worker-1").await;
    e.launcher_pod("pi").await;
    let suspend = |on: bool| json!({"spec": {"runPolicy": {"suspend": on}}});
    e.jobs
        .patch("pi", &PatchParams::default(), &Patch::Merge(&suspend(true)))
        .await
        .unwrap();
    e.wait_condition("pi", "Suspended", "True").await;
    e.wait_workers(&[]).await;
    wait_for("the launcher Job to go", T, || async {
        let names = e.job_names().await;
        if names.is_empty() {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    e.jobs
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(&suspend(false)),
        )
        .await
        .unwrap();
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        e.job_names().await.is_empty(),
        "the new workers are not Ready yet"
    );
    e.kubelet.run("pi-worker-0").await;
    e.kubelet.run("pi-worker-1").await;
    e.launcher_pod("pi").await;
}

#[tokio::test]
async fn suspended_at_creation_then_resumed() {
    let e = Env::new("kf-suspend").await;
    let _c = e.controller();
    e.create(job("pi", json!({"spec": {"runPolicy": {"suspend": true}}})))
        .await;
    let s = e.wait_condition("pi", "Suspended", "True").await;
    assert_eq!(
        reasons(&s),
        [
            c("Created", "True", "MPIJobCreated"),
            c("Suspended", "True", "MPIJobSuspended"),
            c("Running", "False", "MPIJobSuspended")
        ]
    );
    assert_eq!(s.start_time, None, "a suspended job has not started");
    // The Service, ConfigMap and Secret exist; no pods, no launcher Job.
    e.api::<Service>().get("pi").await.unwrap();
    e.api::<ConfigMap>().get("pi-config").await.unwrap();
    e.api::<Secret>().get("pi-ssh").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(e.pod_names().await.is_empty());
    assert!(e.job_names().await.is_empty());

    e.jobs
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"runPolicy": {"suspend": false}}})),
        )
        .await
        .unwrap();
    let s = e.wait_condition("pi", "Suspended", "False").await;
    assert_eq!(
        s.condition("Suspended").unwrap().reason.as_deref(),
        Some("MPIJobResumed")
    );
    assert!(s.start_time.is_some(), "resuming starts the clock");
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    e.launcher_pod("pi").await;
    e.wait_event("pi", "MPIJobResumed: MPIJob resumed").await;

    // Suspending a running job deletes its workers and its launcher Job.
    e.jobs
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"runPolicy": {"suspend": true}}})),
        )
        .await
        .unwrap();
    e.wait_condition("pi", "Suspended", "True").await;
    e.wait_workers(&[]).await;
    wait_for("the launcher Job to go", T, || async {
        let names = e.job_names().await;
        if names.is_empty() {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn a_failed_launcher_fails_the_job_naming_its_pod_container_and_exit_code() {
    let e = Env::new("kf-fail").await;
    let _c = e.controller();
    e.create(job(
        "pi",
        json!({"spec": {"runPolicy": {"backoffLimit": 0, "cleanPodPolicy": "All"}, "mpiReplicaSpecs": {"Launcher": {"restartPolicy": "Never"}}}}),
    ))
    .await;
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    let lp = e.launcher_pod("pi").await;
    e.kubelet.run(&lp).await;
    e.kubelet
        .terminate(&lp, "mpi-launcher", &Termination::new(1, "Error"))
        .await;
    let s = e.wait_condition("pi", "Failed", "True").await;
    let failed = s.condition("Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded/"));
    assert_eq!(
        failed.message.as_deref(),
        Some(&*format!("Job has reached the specified backoff limit: ; launcher pod {lp} container mpi-launcher exited 1 (Error)"))
    );
    assert!(s.completion_time.is_some());
    assert_eq!(s.replica_statuses["Launcher"].failed, 1);
    // cleanPodPolicy All: every worker goes.
    e.wait_workers(&[]).await;
}

#[tokio::test]
async fn an_evicted_worker_fails_the_job_and_the_clean_up_runs() {
    let e = Env::new("kf-evict").await;
    let _c = e.controller();
    e.create(job(
        "pi",
        json!({"spec": {"runPolicy": {"cleanPodPolicy": "All"}}}),
    ))
    .await;
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    e.kubelet.run("pi-worker-0").await;
    e.pods
        .patch_status(
            "pi-worker-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}})),
        )
        .await
        .unwrap();
    let s = e.wait_condition("pi", "Failed", "True").await;
    let failed = s.condition("Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("MPIJobEvicted"));
    assert_eq!(
        failed.message.as_deref(),
        Some("1/2 workers are evicted: worker pi-worker-1 failed: Evicted: The node was low on resource: memory.")
    );
    assert!(
        s.completion_time.is_some(),
        "mpi-operator #647: an evicted job ends"
    );
    e.wait_workers(&[]).await;
}

#[tokio::test]
async fn a_job_managed_by_another_controller_is_left_alone() {
    let e = Env::new("kf-managed").await;
    let _c = e.controller();
    e.create(job(
        "pi",
        json!({"spec": {"runPolicy": {"managedBy": "kueue.x-k8s.io/multikueue"}}}),
    ))
    .await;
    // A job we run, created after it, is served: so the first was seen.
    e.create(job("other", json!({}))).await;
    e.wait_condition("other", "Created", "True").await;
    assert_eq!(e.status("pi").await, JobStatus::default());
    assert!(e.api::<Secret>().get_opt("pi-ssh").await.unwrap().is_none());
    assert!(e.api::<Service>().get_opt("pi").await.unwrap().is_none());
    assert!(!e.job_names().await.contains(&"pi-launcher".to_string()));
    assert!(!e.pod_names().await.iter().any(|p| p.starts_with("pi-")));
    assert!(e.events("pi").await.is_empty());
}

#[tokio::test]
async fn an_invalid_job_gets_a_validation_event_and_nothing_else() {
    let e = Env::new("kf-invalid").await;
    let _c = e.controller();
    let mut bad = kubeflow_pi_job("pi");
    bad["spec"]["mpiReplicaSpecs"]["Worker"]
        .as_object_mut()
        .unwrap()
        .remove("replicas");
    bad["spec"]["sshAuthMountPath"] = json!("home/.ssh");
    e.create(bad).await;
    e.wait_event(
        "pi",
        "ValidationError: Found validation errors: spec.sshAuthMountPath: \"home/.ssh\" is not an absolute path: give the .ssh directory of the user MPI runs as, e.g. /home/mpiuser/.ssh; spec.mpiReplicaSpecs.Worker.replicas: must be at least 1, got unset: set the number of workers, or remove the Worker entry for a launcher-only job",
    )
    .await;
    e.create(job("other", json!({}))).await;
    e.wait_condition("other", "Created", "True").await;
    assert_eq!(
        e.status("pi").await,
        JobStatus::default(),
        "no status, as mpi-operator"
    );
    assert!(e.api::<Secret>().get_opt("pi-ssh").await.unwrap().is_none());
}

#[tokio::test]
async fn an_image_with_an_agent_of_another_release_gets_a_validation_event() {
    let e = Env::new("kf-baked-old").await;
    let _c = e.controller();
    let mut bad = kubeflow_pi_job("pi");
    bad["metadata"]["annotations"] =
        json!({ mpijob_api::contract::AGENT_IN_IMAGE_ANNOTATION: "0.0.9" });
    e.create(bad).await;
    let v = mpijob_api::contract::VERSION;
    e.wait_event(
        "pi",
        &format!("ValidationError: Found validation errors: metadata.annotations[\"batch.tensorstack.dev/agent-in-image\"]: \"0.0.9\" is not the agent version this controller runs, {v}: put agent {v} into the image (COPY --from=mpijob/agent:{v} /mpijob-agent /opt/mpijob/mpijob-agent) and set \"{v}\", or remove the annotation to have the agent copied into the pods"),
    )
    .await;
    assert!(
        e.pod_names().await.is_empty(),
        "no pod for a job whose image holds the wrong agent"
    );
}

#[tokio::test]
async fn a_name_clash_is_reported_and_nothing_is_taken_over() {
    let e = Env::new("kf-clash").await;
    let _c = e.controller();
    let services: Api<Service> = e.api();
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "pi"},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    e.create(job("pi", json!({}))).await;
    e.wait_event(
        "pi",
        "ErrResourceExists: Resource \"pi\" of Kind \"Service\" already exists and is not managed by MPIJob: delete or rename it, or rename the job",
    )
    .await;
    assert!(
        e.pod_names().await.is_empty(),
        "no pod joins someone else's Service"
    );
    assert!(e.job_names().await.is_empty());
    assert!(
        services
            .get("pi")
            .await
            .unwrap()
            .owner_references()
            .is_empty(),
        "theirs stays theirs"
    );
}

#[tokio::test]
async fn a_restarted_controller_creates_nothing_twice() {
    let e = Env::new("kf-restart").await;
    let c = e.controller();
    e.create(job("pi", json!({}))).await;
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    let lp = e.launcher_pod("pi").await;
    e.wait_condition("pi", "Created", "True").await;
    let uids = |pods: Vec<Pod>| {
        pods.iter()
            .map(|p| p.uid().unwrap())
            .collect::<BTreeSet<_>>()
    };
    let before = uids(e.pods.list(&ListParams::default()).await.unwrap().items);
    let job_before = e.api::<Job>().get("pi-launcher").await.unwrap().uid();
    c.kill().await;
    let _c = e.controller();
    e.kubelet.run("pi-worker-0").await;
    e.kubelet.run("pi-worker-1").await;
    e.kubelet.run(&lp).await;
    e.wait_condition("pi", "Running", "True").await;
    let after = uids(e.pods.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(before, after, "the same pods, none added");
    assert_eq!(
        e.api::<Job>().get("pi-launcher").await.unwrap().uid(),
        job_before
    );
    assert_eq!(e.job_names().await, ["pi-launcher"]);
}

#[tokio::test]
async fn deleting_the_job_leaves_nothing_behind() {
    let e = Env::new("kf-delete").await;
    let _c = e.controller();
    e.create(job("pi", json!({}))).await;
    e.wait_workers(&["pi-worker-0", "pi-worker-1"]).await;
    e.launcher_pod("pi").await;
    e.jobs
        .delete("pi", &DeleteParams::background())
        .await
        .unwrap();
    wait_for("every child to go", T, || async {
        let pods = e.pod_names().await;
        let jobs = e.job_names().await;
        let cms: Vec<String> = e
            .api::<ConfigMap>()
            .list(&ListParams::default().labels("app=pi"))
            .await
            .unwrap()
            .items
            .iter()
            .map(|c| c.name_any())
            .collect();
        let svc = e.api::<Service>().get_opt("pi").await.unwrap();
        let secret = e.api::<Secret>().get_opt("pi-ssh").await.unwrap();
        if pods.is_empty() && jobs.is_empty() && cms.is_empty() && svc.is_none() && secret.is_none()
        {
            Ok(())
        } else {
            Err(format!(
                "pods {pods:?}, jobs {jobs:?}, configmaps {cms:?}, service {}, secret {}",
                svc.is_some(),
                secret.is_some()
            ))
        }
    })
    .await;
}

/// One controller, both APIs at once: each job gets only the children its
/// API calls for.
#[tokio::test]
async fn both_apis_in_one_controller_each_with_its_own_children() {
    let e = Env::new("kf-both").await;
    let _c = e.controller();
    e.create(pi_job("a")).await;
    e.create(job("b", json!({}))).await;
    e.launcher_pod("b").await;
    wait_for("both jobs' pods", T, || async {
        let pods = e.pod_names().await;
        let want: BTreeSet<String> = [
            "a-launcher",
            "a-worker-0",
            "a-worker-1",
            "b-worker-0",
            "b-worker-1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let got: BTreeSet<String> = pods
            .iter()
            .filter(|p| !p.starts_with("b-launcher-"))
            .cloned()
            .collect();
        if got == want {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .await;
    assert_eq!(
        e.job_names().await,
        ["b-launcher"],
        "only the Kubeflow job has a launcher Job"
    );
    let cms = e.api::<ConfigMap>();
    assert!(cms.get_opt("a-config").await.unwrap().is_none());
    assert!(cms.get_opt("b-config").await.unwrap().is_some());
    // Each Secret in its API's shape.
    let secrets = e.api::<Secret>();
    let keys = |s: Secret| {
        s.data
            .unwrap()
            .keys()
            .cloned()
            .collect::<BTreeSet<String>>()
    };
    assert!(keys(secrets.get("a-ssh").await.unwrap()).contains("known_hosts"));
    assert_eq!(
        keys(secrets.get("b-ssh").await.unwrap()),
        BTreeSet::from(["ssh-privatekey".to_string(), "ssh-publickey".to_string()])
    );
    let a_pod = e.pods.get("a-worker-0").await.unwrap();
    assert!(!a_pod
        .labels()
        .contains_key("training.kubeflow.org/job-name"));
}

/// `--apis` serves what it names; by default, each API whose CRD is
/// installed (here both).
#[tokio::test]
async fn the_apis_served_are_those_asked_for_or_installed() {
    use mpijob_controller::runtime::{choose_apis, Served};
    let client = Harness::get().client().await;
    crds::install(&client).await;
    assert_eq!(choose_apis(&client, None).await.unwrap(), Served::ALL);
    assert_eq!(
        choose_apis(&client, Some(&[Served::Kubeflow]))
            .await
            .unwrap(),
        [Served::Kubeflow]
    );
}
