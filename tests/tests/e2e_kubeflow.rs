//! Kubeflow MPIJobs end to end on the real node, with Kubeflow-style images
//! (images/kubeflow: the image configures sshd itself): mpi-operator's e2e
//! cases, each in a fresh namespace, each success asserting that every rank
//! ran on a worker pod's hostname and none on the launcher (the check that
//! catches Open MPI 5 ignoring the hostfile, mpi-operator #842).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use mpijob_api::kubeflow::MPIJob;
use mpijob_tests::controller::wait_for;
use mpijob_tests::e2e::{
    on_this_node, pi_example, ranks_on, KUBEFLOW_MPICH_IMAGE, KUBEFLOW_OPENMPI4_BAKED_IMAGE,
    KUBEFLOW_OPENMPI4_IMAGE, KUBEFLOW_OPENMPI5_IMAGE, OPENMPI_IMAGE,
};
use serde_json::{json, Value};

type E2e = mpijob_tests::e2e::E2e<MPIJob>;

const RUN: Duration = Duration::from_secs(180);

/// A Kubeflow pi job with 2 workers on `image`, as root or as mpiuser.
fn pi(ns: &str, image: &str, root: bool, launcher_cmd: &[&str]) -> Value {
    let small = json!({"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}});
    let user = if root {
        json!({})
    } else {
        json!({"runAsUser": 1000})
    };
    let mut worker = json!({"name": "mpi-worker", "image": image, "imagePullPolicy": "Never", "resources": small, "securityContext": user});
    if !root {
        worker["command"] = json!(["/usr/sbin/sshd"]);
        worker["args"] = json!(["-De", "-f", "/home/mpiuser/.sshd_config"]);
    }
    let mut job = json!({
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": {"name": "pi", "namespace": ns},
        "spec": {
            "slotsPerWorker": 1,
            "runPolicy": {"cleanPodPolicy": "Running"},
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": {"spec": {"containers": [{
                    "name": "mpi-launcher", "image": image, "imagePullPolicy": "Never",
                    "command": launcher_cmd, "resources": small, "securityContext": user
                }]}}},
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [worker]}}}
            }
        }
    });
    if !root {
        job["spec"]["sshAuthMountPath"] = json!("/home/mpiuser/.ssh");
    }
    if image == KUBEFLOW_MPICH_IMAGE {
        // Without it the launcher gets Open MPI's variables, MPICH's mpirun
        // finds no hostfile, and every rank runs on the launcher: the
        // rank check below catches exactly that.
        job["spec"]["mpiImplementation"] = json!("MPICH");
    }
    job
}

const OMPI_ROOT: &[&str] = &[
    "mpirun",
    "--allow-run-as-root",
    "-n",
    "2",
    "/home/mpiuser/pi",
];
const PLAIN: &[&str] = &["mpirun", "-n", "2", "/home/mpiuser/pi"];

/// Every rank ran on a worker pod's hostname, one on each, none on the
/// launcher, and pi came out right.
async fn assert_ranks_on_workers(e2e: &E2e, ns: &str) {
    assert_ranks_on_the_workers_of(e2e, ns, "pi", 2).await;
}

/// [`assert_ranks_on_workers`] for job `job` with `workers` workers: ranks
/// on each worker, none on the launcher, and pi came out right.
async fn assert_ranks_on_the_workers_of(e2e: &E2e, ns: &str, job: &str, workers: usize) {
    let pods = e2e.launcher_pods(ns, job).await;
    assert_eq!(pods.len(), 1, "one launcher pod, never restarted: {pods:?}");
    let log = e2e.launcher_log(ns, &pods[0]).await;
    for i in 0..workers {
        let host = format!("{job}-worker-{i}");
        assert!(
            ranks_on(&log, &host) > 0,
            "no rank on {host} in the launcher's log:\n{log}"
        );
    }
    assert!(
        !log.contains(&format!("on host {job}-launcher")),
        "a rank ran on the launcher:\n{log}"
    );
    assert!(log.contains("pi is approximately 3.14159"), "{log}");
}

async fn pi_succeeds(image: &str, root: bool, cmd: &[&str], prefix: &str) {
    let e2e = E2e::get().await;
    let ns = e2e.namespace(prefix).await;
    e2e.create(&ns.name, pi(&ns.name, image, root, cmd)).await;
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    assert_ranks_on_workers(&e2e, &ns.name).await;
}

#[tokio::test]
async fn open_mpi_4_as_root_succeeds_with_a_rank_on_each_worker() {
    pi_succeeds(KUBEFLOW_OPENMPI4_IMAGE, true, OMPI_ROOT, "kf-ompi4").await;
}

#[tokio::test]
async fn open_mpi_5_as_root_succeeds_with_a_rank_on_each_worker() {
    pi_succeeds(KUBEFLOW_OPENMPI5_IMAGE, true, OMPI_ROOT, "kf-ompi5").await;
}

#[tokio::test]
async fn open_mpi_as_mpiuser_succeeds() {
    pi_succeeds(KUBEFLOW_OPENMPI4_IMAGE, false, PLAIN, "kf-ompi-user").await;
}

#[tokio::test]
async fn mpich_as_root_succeeds() {
    pi_succeeds(KUBEFLOW_MPICH_IMAGE, true, PLAIN, "kf-mpich").await;
}

#[tokio::test]
async fn mpich_as_mpiuser_succeeds() {
    pi_succeeds(KUBEFLOW_MPICH_IMAGE, false, PLAIN, "kf-mpich-user").await;
}

/// Open MPI refuses to run as root without `--allow-run-as-root`: with
/// `backoffLimit: 1` the job fails, and the message has the exit code.
#[tokio::test]
async fn open_mpi_as_root_without_allow_run_as_root_fails_with_the_exit_code() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-ompi-noroot").await;
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, PLAIN);
    job["spec"]["runPolicy"]["backoffLimit"] = json!(1);
    job["spec"]["mpiReplicaSpecs"]["Launcher"]["restartPolicy"] = json!("Never");
    e2e.create(&ns.name, job).await;
    let s = e2e.wait_phase(&ns.name, "pi", "Failed", RUN).await;
    let c = s.condition("Failed").unwrap();
    assert!(
        c.reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("BackoffLimitExceeded"),
        "{c:?}"
    );
    let m = c.message.as_deref().unwrap_or_default();
    assert!(m.contains("container mpi-launcher exited 1"), "{m}");
}

/// Created suspended: no pods; resumed: it runs to Succeeded.
#[tokio::test]
async fn a_job_created_suspended_runs_when_resumed() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-suspend").await;
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, OMPI_ROOT);
    job["spec"]["runPolicy"]["suspend"] = json!(true);
    e2e.create(&ns.name, job).await;
    e2e.wait_phase(&ns.name, "pi", "Suspended", RUN).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(e2e
        .pods(&ns.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    e2e.jobs(&ns.name)
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"runPolicy": {"suspend": false}}})),
        )
        .await
        .unwrap();
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    assert_ranks_on_workers(&e2e, &ns.name).await;
}

/// `managedBy` naming another controller: no pods, no Secret, no status.
#[tokio::test]
async fn a_job_managed_elsewhere_gets_nothing() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-managed").await;
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, OMPI_ROOT);
    job["spec"]["runPolicy"]["managedBy"] = json!("kueue.x-k8s.io/multikueue");
    e2e.create(&ns.name, job).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(e2e
        .pods(&ns.name)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let secrets: Api<Secret> = e2e.api(&ns.name);
    assert!(secrets.get_opt("pi-ssh").await.unwrap().is_none());
    let batch: Api<Job> = e2e.api(&ns.name);
    assert!(batch
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(e2e.jobs(&ns.name).get("pi").await.unwrap().status, None);
}

/// `WaitForWorkersReady`: the launcher Job appears only once every worker
/// is Ready, and the job succeeds.
#[tokio::test]
async fn wait_for_workers_ready_creates_the_launcher_after_the_workers() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-wfwr").await;
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, OMPI_ROOT);
    job["spec"]["launcherCreationPolicy"] = json!("WaitForWorkersReady");
    job["spec"]["runPolicy"]["cleanPodPolicy"] = json!("None");
    e2e.create(&ns.name, job).await;
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    let batch: Api<Job> = e2e.api(&ns.name);
    let created = batch
        .get("pi-launcher")
        .await
        .unwrap()
        .creation_timestamp()
        .unwrap()
        .0;
    for w in ["pi-worker-0", "pi-worker-1"] {
        let pod = e2e.pods(&ns.name).get(w).await.unwrap();
        let ready = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.last_transition_time)
            .unwrap_or_else(|| panic!("{w} has no Ready time"))
            .0;
        assert!(
            created >= ready,
            "the launcher Job ({created}) came before {w} was Ready ({ready})"
        );
    }
    assert_ranks_on_workers(&e2e, &ns.name).await;
}

/// The project's Kubeflow fixture `file` (`tests/fixtures/manifests/`, in
/// the shape of mpi-operator's pi example: job `name`, 3 workers of 2
/// slots, the user and paths of a Kubeflow-style image), with only the
/// image (and, on this 2-CPU node, the CPU limits) changed, and pi for the
/// launcher's program (the fixture's `/home/mpiuser/bin/stencil2d` and its
/// arguments).
async fn fixture_succeeds(file: &str, name: &str, image: &str, prefix: &str) {
    let e2e = E2e::get().await;
    let ns = e2e.namespace(prefix).await;
    let mut job = mpijob_tests::fixtures::fixture_manifest(&format!("kubeflow/{file}"));
    job["metadata"]["namespace"] = json!(ns.name);
    for role in ["Launcher", "Worker"] {
        on_this_node(
            &mut job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["containers"][0],
            image,
        );
    }
    let launcher =
        &mut job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0];
    for field in ["command", "args"] {
        if let Some(argv) = launcher[field].as_array_mut() {
            if let Some(at) = argv.iter().position(|a| a == "/home/mpiuser/bin/stencil2d") {
                argv.truncate(at);
                argv.push(json!("/home/mpiuser/pi"));
            }
        }
    }
    assert!(
        launcher.to_string().contains("/home/mpiuser/pi"),
        "{launcher}"
    );
    e2e.create(&ns.name, job).await;
    e2e.wait_phase(&ns.name, name, "Succeeded", RUN).await;
    assert_ranks_on_the_workers_of(&e2e, &ns.name, name, 3).await;
}

#[tokio::test]
async fn a_kubeflow_open_mpi_manifest_succeeds() {
    fixture_succeeds(
        "openmpi.yaml",
        "stencil",
        KUBEFLOW_OPENMPI4_IMAGE,
        "kf-fix-ompi",
    )
    .await;
}

#[tokio::test]
async fn a_kubeflow_mpich_manifest_succeeds() {
    fixture_succeeds(
        "mpich.yaml",
        "stencil-mpich",
        KUBEFLOW_MPICH_IMAGE,
        "kf-fix-mpich",
    )
    .await;
}

/// A T9k job and a Kubeflow job side by side in one namespace.
#[tokio::test]
async fn a_t9k_job_and_a_kubeflow_job_run_side_by_side() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-side").await;
    let mut t9k = pi_example(&ns.name, OPENMPI_IMAGE);
    t9k["metadata"]["name"] = json!("t9k");
    let t9k_e2e = e2e.of::<mpijob_api::MPIJob>();
    t9k_e2e.create(&ns.name, t9k).await;
    e2e.create(
        &ns.name,
        pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, OMPI_ROOT),
    )
    .await;
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    t9k_e2e
        .wait_phase(
            &ns.name,
            "t9k",
            mpijob_api::t9k::v1beta1::Phase::Succeeded,
            RUN,
        )
        .await;
    assert_ranks_on_workers(&e2e, &ns.name).await;
}

/// `runLauncherAsWorker` (the operator runs with `--cluster-domain
/// cluster.local`): the launcher is first in the hostfile, runs a rank
/// itself, and the job succeeds.
#[tokio::test]
async fn run_launcher_as_worker_puts_a_rank_on_the_launcher_too() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-rlaw").await;
    let three = &[
        "mpirun",
        "--allow-run-as-root",
        "-n",
        "3",
        "/home/mpiuser/pi",
    ];
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, three);
    job["spec"]["runLauncherAsWorker"] = json!(true);
    e2e.create(&ns.name, job).await;
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = e2e.api(&ns.name);
    let hostfile = cms.get("pi-config").await.unwrap().data.unwrap()["hostfile"].clone();
    let domain = format!("pi.{}.svc.cluster.local slots=1", ns.name);
    assert_eq!(
        hostfile,
        format!("pi-launcher.{domain}\npi-worker-0.{domain}\npi-worker-1.{domain}\n")
    );
    let pods = e2e.launcher_pods(&ns.name, "pi").await;
    let log = e2e.launcher_log(&ns.name, &pods[0]).await;
    for host in ["pi-launcher", "pi-worker-0", "pi-worker-1"] {
        assert!(ranks_on(&log, host) > 0, "no rank on {host}:\n{log}");
    }
}

/// Case 8: `AtStartup` (the default) with one worker held back. This test
/// is the scheduler of the job's pods (they name a scheduler that does not
/// exist) and binds `pi-worker-1` last. The launcher pod's init container
/// waits for it, says whom it waits for, and never restarts; mpi-operator's
/// launcher instead fails its ssh and restarts until the worker is up.
#[tokio::test]
async fn at_startup_the_launcher_waits_for_a_late_worker_without_restarting() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-late").await;
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, OMPI_ROOT);
    for role in ["Launcher", "Worker"] {
        job["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]["schedulerName"] =
            json!("mpijob-e2e-late");
    }
    e2e.create(&ns.name, job).await;
    let pods = e2e.pods(&ns.name);
    let launcher = wait_for("the launcher pod", Duration::from_secs(60), || async {
        match e2e.launcher_pods(&ns.name, "pi").await.as_slice() {
            [one] => Ok(one.clone()),
            other => Err(format!("launcher pods: {other:?}")),
        }
    })
    .await;
    for p in ["pi-worker-0", "pi-worker-1"] {
        wait_for("the worker pods", Duration::from_secs(60), || async {
            pods.get_opt(p)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no pod {p} yet"))
        })
        .await;
    }
    e2e.bind(&ns.name, &launcher).await;
    e2e.bind(&ns.name, "pi-worker-0").await;
    wait_for(
        "the launcher to say it waits for pi-worker-1",
        Duration::from_secs(90),
        || async {
            let log = e2e.launcher_log(&ns.name, &launcher).await;
            if log.contains("waiting for 1/2 workers: pi-worker-1") {
                Ok(())
            } else {
                Err(log)
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let status = pods.get(&launcher).await.unwrap().status.unwrap();
    let wait = status.init_container_statuses.unwrap_or_default();
    let wait = wait
        .iter()
        .find(|c| c.name == "mpijob-wait-for-workers")
        .expect("the launcher pod's wait init container");
    assert!(
        wait.state.as_ref().unwrap().running.is_some() && wait.restart_count == 0,
        "the launcher did not keep waiting: {wait:?}"
    );
    e2e.bind(&ns.name, "pi-worker-1").await;
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;

    assert_eq!(
        e2e.launcher_pods(&ns.name, "pi").await,
        vec![launcher.clone()]
    );
    let status = pods.get(&launcher).await.unwrap().status.unwrap();
    for c in status
        .init_container_statuses
        .unwrap_or_default()
        .iter()
        .chain(status.container_statuses.unwrap_or_default().iter())
    {
        assert_eq!(c.restart_count, 0, "{c:?}");
    }
    let launcher_jobs: Api<Job> = e2e.api(&ns.name);
    let failed = launcher_jobs
        .get("pi-launcher")
        .await
        .unwrap()
        .status
        .and_then(|s| s.failed)
        .unwrap_or(0);
    assert_eq!(failed, 0, "the launcher Job counted a failed pod");
    assert_ranks_on_workers(&e2e, &ns.name).await;
}

/// Case 10: a real OOM kill on a worker. Rank 1, on `pi-worker-1`, outgrows
/// the worker's 96 MiB limit; the kernel kills it (a child of an sshd
/// session, not the container's main process), the agent's guard around
/// the image's sshd ends the container `OOMKilled` with 137, and the job
/// fails at once, naming the worker, its container, 137 and `OOMKilled`,
/// with the launcher Job never given the chance to retry.
#[tokio::test]
async fn an_oom_killed_worker_fails_the_job_and_is_named() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-oom").await;
    // `tail` keeps a whole "line" of zeros in memory: 512 MiB of it.
    let hog = &[
        "mpirun",
        "--allow-run-as-root",
        "-n",
        "2",
        "sh",
        "-c",
        "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then head -c 512M /dev/zero | tail; fi; sleep 600",
    ];
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_IMAGE, true, hog);
    job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": "10m", "memory": "96Mi"},
        "limits": {"memory": "96Mi"}
    });
    e2e.create(&ns.name, job).await;
    let status = e2e.wait_phase(&ns.name, "pi", "Failed", RUN).await;
    let failed = status.condition("Failed").unwrap();
    let message = failed.message.clone().unwrap_or_default();
    assert_eq!(failed.reason.as_deref(), Some("MPIJobFailed"), "{message}");
    assert!(
        message.contains("1/2 workers failed: worker pod pi-worker-1 container mpi-worker exited 137 (OOMKilled)"),
        "{message}\n{}",
        e2e.describe(&ns.name).await
    );
    assert!(status.completion_time.is_some());

    // The kernel killed the rank, not sshd: the guard said so and stopped
    // sshd itself.
    let lp = LogParams {
        container: Some("mpi-worker".into()),
        ..LogParams::default()
    };
    let log = e2e.pods(&ns.name).logs("pi-worker-1", &lp).await.unwrap();
    assert!(
        log.contains("the kernel's OOM killer killed a process in this worker's memory cgroup")
            && log.contains("stopping /usr/sbin/sshd, exit code 137"),
        "{log}"
    );
    // The launcher Job did not fail its way through its backoff limit.
    let launcher: Api<Job> = e2e.api(&ns.name);
    let js = launcher
        .get("pi-launcher")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert!(js.failed.unwrap_or(0) <= 1, "{js:?}");
}

/// A Kubeflow-style image with the agent baked in, and the job annotated
/// so: the workers' guard runs the image's agent, with no init container
/// and no agent volume, and the job succeeds.
#[tokio::test]
async fn an_image_with_the_agent_baked_in_needs_no_init_container_on_the_workers() {
    let e2e = E2e::get().await;
    let ns = e2e.namespace("kf-baked").await;
    let mut job = pi(&ns.name, KUBEFLOW_OPENMPI4_BAKED_IMAGE, false, PLAIN);
    job["metadata"]["annotations"] = json!({
        mpijob_api::contract::AGENT_IN_IMAGE_ANNOTATION: mpijob_api::contract::VERSION
    });
    e2e.create(&ns.name, job).await;
    let pods = e2e.pods(&ns.name);
    // The workers as created (cleanPodPolicy Running deletes them at the end).
    let workers = wait_for("both workers running", RUN, || async {
        let list = pods
            .list(&ListParams::default().labels("training.kubeflow.org/job-role=worker"))
            .await
            .map_err(|e| e.to_string())?;
        if list.items.len() == 2 {
            Ok(list.items)
        } else {
            Err(format!("{} workers", list.items.len()))
        }
    })
    .await;
    for w in &workers {
        let spec = w.spec.as_ref().unwrap();
        assert!(
            spec.init_containers.as_ref().is_none_or(Vec::is_empty),
            "{}: {:?}",
            w.name_any(),
            spec.init_containers
        );
        assert!(spec
            .volumes
            .iter()
            .flatten()
            .all(|v| v.name != mpijob_api::contract::AGENT_VOLUME));
        let command = spec.containers[0].command.clone().unwrap();
        assert_eq!(
            command[..2],
            [mpijob_api::contract::agent_path(), "guard".to_string()]
        );
    }
    e2e.wait_phase(&ns.name, "pi", "Succeeded", RUN).await;
    assert_ranks_on_workers(&e2e, &ns.name).await;
}
