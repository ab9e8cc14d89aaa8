//! Gang scheduling against the real API server, with the three PodGroup
//! CRDs (`tests/fixtures/podgroups/`, written from the documented fields):
//! the PodGroup each API and flag gives, every pod's scheduling fields,
//! the status while the pods wait, pause/suspend and resume, clean-up, a
//! missing CRD, and WaitForWorkersReady under a gang that starts pods only
//! when its minimum exists (the test plays the gang scheduler).

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use mpijob_api::kubeflow::MPIJob as KfMPIJob;
use mpijob_api::t9k::v1beta1::{ConditionType, Phase};
use mpijob_api::MPIJob;
use mpijob_tests::controller::{wait_for, RunningController};
use mpijob_tests::fixtures::{kubeflow_pi_job, pi_job};
use mpijob_tests::kubelet_stand_in::Termination;
use mpijob_tests::{crds, merge, T};
use serde_json::{json, Value};

/// The three kinds: (CRD file, group, version).
const T9K: (&str, &str, &str) = ("t9k.yaml", "scheduler.tensorstack.dev", "v1beta1");
const VOLCANO: (&str, &str, &str) = ("volcano.yaml", "scheduling.volcano.sh", "v1beta1");
const PLUGINS: (&str, &str, &str) = ("scheduler-plugins.yaml", "scheduling.x-k8s.io", "v1alpha1");

fn crd_name(kind: (&str, &str, &str)) -> String {
    format!("podgroups.{}", kind.1)
}

/// Install a PodGroup CRD (idempotent) and wait until it is served.
async fn install(client: &Client, kind: (&str, &str, &str)) {
    crds::install_file(client, &format!("tests/fixtures/podgroups/{}", kind.0)).await;
}

/// Remove a PodGroup CRD and wait until the API server no longer serves it.
async fn uninstall(client: &Client, kind: (&str, &str, &str)) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd_name(kind);
    let _ = api.delete(&name, &DeleteParams::default()).await;
    wait_for(
        &format!("{name} to go"),
        Duration::from_secs(60),
        || async {
            match api.get_opt(&name).await.unwrap() {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        },
    )
    .await;
}

/// A PriorityClass (cluster-wide; the same value in every test).
async fn priority_class(client: &Client, name: &str, value: i32) {
    let api: Api<PriorityClass> = Api::all(client.clone());
    let pc: PriorityClass =
        serde_json::from_value(json!({"metadata": {"name": name}, "value": value})).unwrap();
    match api.create(&PostParams::default(), &pc).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => panic!("creating PriorityClass {name}: {e}"),
    }
}

type Env = mpijob_tests::Env<MPIJob>;

/// An [`Env`] with the PodGroup CRDs of `kinds` installed too.
async fn env(prefix: &str, kinds: &[(&str, &str, &str)]) -> Env {
    let e = Env::new(prefix).await;
    for k in kinds {
        install(&e.client, *k).await;
    }
    e
}

/// What only these tests do with an [`Env`].
trait GangEnv {
    fn groups(&self, kind: (&str, &str, &str)) -> Api<DynamicObject>;
    /// The PodGroup `name` of `kind`, once it exists (and its uid).
    async fn group(&self, kind: (&str, &str, &str), name: &str) -> DynamicObject;
    async fn group_gone(&self, kind: (&str, &str, &str), name: &str);
    async fn pods_named(&self, names: &[&str]) -> Vec<Pod>;
    async fn no_pods_named(&self, names: &[&str]);
    /// The T9k job's Scheduled condition once its reason is `reason`.
    async fn t9k_scheduled(&self, job: &str, reason: &str) -> (bool, String);
    async fn kubeflow_scheduled(&self, job: &str, reason: &str) -> (String, String, usize);
    async fn set_t9k(&self, job: &str, patch: Value);
}

impl GangEnv for Env {
    fn groups(&self, kind: (&str, &str, &str)) -> Api<DynamicObject> {
        let ar = ApiResource {
            group: kind.1.into(),
            version: kind.2.into(),
            api_version: format!("{}/{}", kind.1, kind.2),
            kind: "PodGroup".into(),
            plural: "podgroups".into(),
        };
        Api::namespaced_with(self.client.clone(), &self.ns.name, &ar)
    }

    async fn group(&self, kind: (&str, &str, &str), name: &str) -> DynamicObject {
        let api = self.groups(kind);
        wait_for(&format!("PodGroup {name} ({})", kind.1), T, || async {
            match api.get_opt(name).await.unwrap() {
                Some(g) if g.metadata.deletion_timestamp.is_none() => Ok(g),
                _ => Err("not there".to_string()),
            }
        })
        .await
    }

    async fn group_gone(&self, kind: (&str, &str, &str), name: &str) {
        let api = self.groups(kind);
        wait_for(&format!("PodGroup {name} to go"), T, || async {
            match api.get_opt(name).await.unwrap() {
                Some(g) if g.metadata.deletion_timestamp.is_none() => Err("still there".into()),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn pods_named(&self, names: &[&str]) -> Vec<Pod> {
        let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        wait_for(&format!("pods {want:?}"), T, || async {
            let list = self.pods.list(&ListParams::default()).await.unwrap();
            let live: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| want.contains(&p.name_any()))
                .collect();
            if live.len() == want.len() {
                Ok(live)
            } else {
                Err(format!(
                    "{:?}",
                    live.iter().map(|p| p.name_any()).collect::<Vec<_>>()
                ))
            }
        })
        .await
    }

    async fn no_pods_named(&self, names: &[&str]) {
        wait_for(&format!("pods {names:?} to go"), T, || async {
            let list = self.pods.list(&ListParams::default()).await.unwrap();
            let left: Vec<String> = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .filter(|n| names.contains(&n.as_str()))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        })
        .await
    }

    async fn t9k_scheduled(&self, job: &str, reason: &str) -> (bool, String) {
        wait_for(&format!("{job} Scheduled {reason}"), T, || async {
            let s = self.status(job).await;
            match s.condition(ConditionType::Scheduled) {
                Some(c) if c.reason.as_deref() == Some(reason) => {
                    Ok((c.is_true(), c.message.clone().unwrap_or_default()))
                }
                _ => Err(format!("{s:?}")),
            }
        })
        .await
    }

    async fn kubeflow_scheduled(&self, job: &str, reason: &str) -> (String, String, usize) {
        wait_for(&format!("{job} Scheduled {reason}"), T, || async {
            let s = self
                .api::<KfMPIJob>()
                .get(job)
                .await
                .unwrap()
                .status
                .unwrap_or_default();
            let at = s.conditions.iter().position(|c| c.type_ == "Scheduled");
            match at.map(|i| (i, &s.conditions[i])) {
                Some((i, c)) if c.reason.as_deref() == Some(reason) => {
                    Ok((c.status.clone(), c.message.clone().unwrap_or_default(), i))
                }
                _ => Err(format!("{s:?}")),
            }
        })
        .await
    }

    async fn set_t9k(&self, job: &str, patch: Value) {
        self.jobs
            .patch(job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

fn t9k_job(name: &str, patch: Value) -> Value {
    let mut j = pi_job(name);
    merge(&mut j, patch);
    j
}

fn kubeflow_job(name: &str, patch: Value) -> Value {
    let mut j = kubeflow_pi_job(name);
    merge(&mut j, patch);
    j
}

/// The pod is in `kind`'s gang `group`, under `scheduler`.
fn assert_in_gang(p: &Pod, kind: (&str, &str, &str), group: &str, scheduler: &str) {
    let name = p.name_any();
    assert_eq!(
        p.spec.as_ref().unwrap().scheduler_name.as_deref(),
        Some(scheduler),
        "{name}"
    );
    let (labels, annotations) = (p.labels(), p.annotations());
    match kind.1 {
        "scheduler.tensorstack.dev" => assert_eq!(
            labels
                .get("scheduler.tensorstack.dev/group-name")
                .map(String::as_str),
            Some(group),
            "{name}"
        ),
        "scheduling.volcano.sh" => assert_eq!(
            annotations
                .get("scheduling.k8s.io/group-name")
                .map(String::as_str),
            Some(group),
            "{name}"
        ),
        _ => assert_eq!(
            labels
                .get("scheduling.x-k8s.io/pod-group")
                .map(String::as_str),
            Some(group),
            "{name}"
        ),
    }
}

/// The PodGroup is controlled by the job, and labelled with its API's
/// job-name label only: a Kubeflow job's carries no T9k label.
fn owned_by(g: &DynamicObject, kind: &str, job: &str) {
    let o = &g.owner_references()[0];
    assert_eq!(
        (o.kind.as_str(), o.name.as_str(), o.controller),
        (kind, job, Some(true))
    );
    let (ours, other) = if o.api_version.starts_with("kubeflow.org/") {
        (
            "training.kubeflow.org/job-name",
            "batch.tensorstack.dev/mpi-job-name",
        )
    } else {
        (
            "batch.tensorstack.dev/mpi-job-name",
            "training.kubeflow.org/job-name",
        )
    };
    assert_eq!(
        g.labels().get(ours).map(String::as_str),
        Some(job),
        "{:?}",
        g.labels()
    );
    assert!(!g.labels().contains_key(other), "{:?}", g.labels());
}

const PODS: [&str; 3] = ["pi-launcher", "pi-worker-0", "pi-worker-1"];

#[tokio::test]
async fn t9k_scheduler_podgroup_through_waiting_running_pause_resume_and_clean_up() {
    let e = env("gang-t9k", &[T9K]).await;
    let _c = e.controller();
    e.create(t9k_job(
        "pi",
        json!({"spec": {
            "scheduler": {"t9kScheduler": {"queue": "gpu", "priority": 40}},
            "runPolicy": {"cleanUpWorkers": "all"},
        }}),
    ))
    .await;
    let g = e.group(T9K, "pi").await;
    owned_by(&g, "MPIJob", "pi");
    assert_eq!(
        g.data["spec"],
        json!({"minMember": 3, "roles": [{"name": "launcher", "minMember": 1}, {"name": "worker", "minMember": 2}], "queue": "gpu", "priority": 40})
    );
    for p in e.pods_named(&PODS).await {
        assert_in_gang(&p, T9K, "pi", "t9k-scheduler");
    }
    // No scheduler runs here: the status says whom the pods wait for.
    let (placed, message) = e.t9k_scheduled("pi", "WaitingForGangScheduler").await;
    assert!(!placed);
    assert_eq!(message, "3 of 3 pods wait for the gang scheduler t9k-scheduler, which starts PodGroup pi (minMember 3, queue gpu) only when all of its pods fit at once; no scheduler has looked at them yet: check that t9k-scheduler runs in the cluster");
    e.wait_phase("pi", Phase::Pending).await;
    e.wait_event("pi", &format!("WaitingForGangScheduler: {message}"))
        .await;
    // The scheduler turns one pod down, with its reason.
    e.kubelet
        .scheduled(
            "pi-worker-1",
            false,
            "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
        )
        .await;
    wait_for("the scheduler's words", T, || async {
        let (_, m) = e.t9k_scheduled("pi", "WaitingForGangScheduler").await;
        if m.ends_with(
            "; t9k-scheduler says: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
        ) {
            Ok(())
        } else {
            Err(m)
        }
    })
    .await;
    // Placed and running.
    for p in PODS {
        e.kubelet.run(p).await;
    }
    let (placed, message) = e.t9k_scheduled("pi", "GangScheduled").await;
    assert!(placed);
    assert_eq!(message, "t9k-scheduler placed all 3 pods of PodGroup pi");
    e.wait_phase("pi", Phase::Running).await;

    // Pause: the pods and the PodGroup go. Resume: both come back.
    let first_uid = g.uid().unwrap();
    e.set_t9k(
        "pi",
        json!({"spec": {"runMode": {"pause": {"enable": true}}}}),
    )
    .await;
    e.group_gone(T9K, "pi").await;
    e.wait_phase("pi", Phase::Paused).await;
    e.set_t9k(
        "pi",
        json!({"spec": {"runMode": {"pause": {"enable": false}}}}),
    )
    .await;
    let again = e.group(T9K, "pi").await;
    assert_ne!(again.uid().unwrap(), first_uid, "a new PodGroup on resume");
    assert_eq!(again.data["spec"]["minMember"], 3);
    let pods = e.pods_named(&PODS).await;
    for p in &pods {
        assert_in_gang(p, T9K, "pi", "t9k-scheduler");
    }
    for p in PODS {
        e.kubelet.run(p).await;
    }
    e.wait_phase("pi", Phase::Running).await;
    // Success with cleanUpWorkers All: the workers and the PodGroup go.
    e.kubelet
        .terminate(
            "pi-launcher",
            "mpi-worker",
            &Termination::new(0, "Completed"),
        )
        .await;
    e.wait_phase("pi", Phase::Succeeded).await;
    e.group_gone(T9K, "pi").await;
    e.no_pods_named(&["pi-worker-0", "pi-worker-1"]).await;
}

#[tokio::test]
async fn t9k_jobs_under_the_volcano_flag_get_volcanos_podgroup_unless_they_name_t9k() {
    let e = env("gang-t9k-volcano", &[T9K, VOLCANO]).await;
    priority_class(&e.client, "batch", 100).await;
    let _c = RunningController::start_gang(&e.client, &e.ns.name, "volcano");
    e.create(t9k_job("pi", json!({
        "metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "research"}},
        "spec": {"worker": {"template": {"spec": {"priorityClassName": "batch", "containers": [
            {"name": "mpi-worker", "image": "mpijob/openmpi:test", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}}}
        ]}}}},
    })))
    .await;
    e.create(t9k_job(
        "own",
        json!({"spec": {"scheduler": {"t9kScheduler": {"queue": "q"}}}}),
    ))
    .await;
    let g = e.group(VOLCANO, "pi").await;
    owned_by(&g, "MPIJob", "pi");
    assert_eq!(
        g.data["spec"],
        json!({"minMember": 3, "queue": "research", "priorityClassName": "batch", "minResources": {"cpu": "1500m", "memory": "3Gi", "nvidia.com/gpu": "3"}})
    );
    for p in e.pods_named(&PODS).await {
        assert_in_gang(&p, VOLCANO, "pi", "volcano");
    }
    let (_, message) = e.t9k_scheduled("pi", "WaitingForGangScheduler").await;
    assert!(message.starts_with("3 of 3 pods wait for the gang scheduler volcano, which starts PodGroup pi (minMember 3, queue research)"), "{message}");
    // The job that names the T9k scheduler keeps it.
    let own = e.group(T9K, "own").await;
    assert_eq!(own.data["spec"]["queue"], "q");
    assert!(e.groups(VOLCANO).get_opt("own").await.unwrap().is_none());
    for p in e
        .pods_named(&["own-launcher", "own-worker-0", "own-worker-1"])
        .await
    {
        assert_in_gang(&p, T9K, "own", "t9k-scheduler");
    }
}

#[tokio::test]
async fn kubeflow_under_volcano_with_and_without_each_policy_field_and_suspend() {
    let e = env("gang-kf-volcano", &[VOLCANO]).await;
    // The workers rank above the launcher: they count first.
    priority_class(&e.client, "launcher-class", 10).await;
    priority_class(&e.client, "worker-class", 1000).await;
    let _c = RunningController::start_gang(&e.client, &e.ns.name, "volcano");
    let requests = |cpu: &str| json!({"resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}});
    let mut launcher =
        json!({"name": "mpi-launcher", "image": "mpijob/openmpi:test", "command": ["mpirun"]});
    merge(&mut launcher, requests("1"));
    let mut worker = json!({"name": "mpi-worker", "image": "mpijob/openmpi:test"});
    merge(&mut worker, requests("2"));
    let templates = json!({"spec": {"mpiReplicaSpecs": {
        "Launcher": {"template": {"spec": {"priorityClassName": "launcher-class", "containers": [launcher]}}},
        "Worker": {"template": {"spec": {"priorityClassName": "worker-class", "containers": [worker]}}},
    }}});
    // Nothing in the policy: the annotation's queue, the launcher's class,
    // workers + 1, the summed requests.
    let mut bare = kubeflow_job("bare", templates.clone());
    merge(
        &mut bare,
        json!({"metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "annotated"}}}),
    );
    e.create(bare).await;
    // Everything in the policy.
    let mut full = kubeflow_job("full", templates.clone());
    merge(
        &mut full,
        json!({"metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "annotated"}}, "spec": {"runPolicy": {"schedulingPolicy": {
            "minAvailable": 2, "queue": "q1", "priorityClass": "high", "minResources": {"cpu": "7", "memory": "2Gi"}, "scheduleTimeoutSeconds": 30,
        }}}}),
    );
    e.create(full).await;

    let g = e.group(VOLCANO, "bare").await;
    owned_by(&g, "MPIJob", "bare");
    assert_eq!(
        g.data["spec"],
        json!({"minMember": 3, "queue": "annotated", "priorityClassName": "launcher-class", "minResources": {"cpu": "5", "memory": "3Gi"}})
    );
    let g = e.group(VOLCANO, "full").await;
    assert_eq!(
        g.data["spec"],
        json!({"minMember": 2, "queue": "q1", "priorityClassName": "high", "minResources": {"cpu": "7", "memory": "2Gi"}})
    );
    for p in e.pods_named(&["full-worker-0", "full-worker-1"]).await {
        assert_in_gang(&p, VOLCANO, "full", "volcano");
    }
    // The launcher Job's template is in the gang too.
    let batch: Api<Job> = e.api();
    let launcher = wait_for("full-launcher", T, || async {
        batch
            .get_opt("full-launcher")
            .await
            .unwrap()
            .ok_or_else(|| "none".to_string())
    })
    .await;
    let t = launcher.spec.unwrap().template;
    assert_eq!(t.spec.unwrap().scheduler_name.as_deref(), Some("volcano"));
    assert_eq!(
        t.metadata.unwrap().annotations.unwrap()["scheduling.k8s.io/group-name"],
        "full"
    );
    // The condition is first, so that the State column keeps the lifecycle.
    let (status, message, at) = e
        .kubeflow_scheduled("full", "WaitingForGangScheduler")
        .await;
    assert_eq!((status.as_str(), at), ("False", 0));
    assert!(message.contains("wait for the gang scheduler volcano, which starts PodGroup full (minMember 2, queue q1)"), "{message}");

    // An edit of the policy reaches the PodGroup (mpi-operator's e2e:
    // clearing minResources lets the gang start). Recomputed for
    // minAvailable 2, the higher-priority workers count: two workers.
    e.api::<KfMPIJob>()
        .patch(
            "full",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"runPolicy": {"schedulingPolicy": {"minResources": null}}}}),
            ),
        )
        .await
        .unwrap();
    wait_for("minResources recomputed", T, || async {
        let g = e.groups(VOLCANO).get("full").await.unwrap();
        if g.data["spec"]["minResources"] == json!({"cpu": "4", "memory": "2Gi"}) {
            Ok(())
        } else {
            Err(format!("{}", g.data["spec"]))
        }
    })
    .await;

    // Suspend: the workers and the PodGroup go; resume brings both back.
    let suspend = |on: bool| json!({"spec": {"runPolicy": {"suspend": on}}});
    e.api::<KfMPIJob>()
        .patch(
            "full",
            &PatchParams::default(),
            &Patch::Merge(&suspend(true)),
        )
        .await
        .unwrap();
    e.group_gone(VOLCANO, "full").await;
    e.no_pods_named(&["full-worker-0", "full-worker-1"]).await;
    e.api::<KfMPIJob>()
        .patch(
            "full",
            &PatchParams::default(),
            &Patch::Merge(&suspend(false)),
        )
        .await
        .unwrap();
    e.group(VOLCANO, "full").await;
    e.pods_named(&["full-worker-0", "full-worker-1"]).await;
}

/// With WaitForWorkersReady the launcher comes only after the workers run.
/// A gang that counted it would never start: the test plays a gang
/// scheduler that places the group's pods only once minMember of them
/// exist, and the job still runs.
#[tokio::test]
async fn wait_for_workers_ready_under_a_gang_reaches_running() {
    let e = env("gang-kf-wait", &[VOLCANO]).await;
    let _c = RunningController::start_gang(&e.client, &e.ns.name, "volcano");
    e.create(kubeflow_job(
        "pi",
        json!({"spec": {"launcherCreationPolicy": "WaitForWorkersReady"}}),
    ))
    .await;
    let g = e.group(VOLCANO, "pi").await;
    let min = g.data["spec"]["minMember"].as_u64().unwrap() as usize;
    assert_eq!(min, 2, "the workers only");
    // The gang scheduler's rule: nothing until minMember pods name the group.
    let in_group = || async {
        let list = e.pods.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .filter(|p| {
                p.annotations()
                    .get("scheduling.k8s.io/group-name")
                    .map(String::as_str)
                    == Some("pi")
            })
            .map(|p| p.name_any())
            .collect::<Vec<_>>()
    };
    let members = wait_for("the gang's minimum", T, || async {
        let m = in_group().await;
        if m.len() >= min {
            Ok(m)
        } else {
            Err(format!("{m:?}"))
        }
    })
    .await;
    for p in &members {
        e.kubelet.scheduled(p, true, "").await;
        e.kubelet.run(p).await;
    }
    // The launcher follows the ready workers, and the job runs.
    let lp = wait_for("the launcher pod", T, || async {
        let list = e
            .pods
            .list(&ListParams::default().labels("training.kubeflow.org/job-role=launcher"))
            .await
            .unwrap();
        list.items
            .first()
            .map(|p| p.name_any())
            .ok_or_else(|| "none".to_string())
    })
    .await;
    let launcher = e.pods.get(&lp).await.unwrap();
    assert_in_gang(&launcher, VOLCANO, "pi", "volcano");
    e.kubelet.run(&lp).await;
    e.wait_job::<KfMPIJob>("pi", "Running", T).await;
    let (status, message, _) = e.kubeflow_scheduled("pi", "GangScheduled").await;
    assert_eq!(status, "True");
    assert_eq!(message, "volcano placed all 3 pods of PodGroup pi");
}

/// scheduler-plugins, first without its CRD: the job waits with a
/// condition and an event naming the CRD and the flag, a job of another
/// scheduler runs beside it, and installing the CRD lets it go on with no
/// restart of the controller.
#[tokio::test]
async fn scheduler_plugins_missing_crd_then_installed() {
    let e = env("gang-kf-plugins", &[T9K]).await;
    uninstall(&e.client, PLUGINS).await;
    let _c = RunningController::start_gang(&e.client, &e.ns.name, "scheduler-plugins-scheduler");
    e.create(kubeflow_job("pi", json!({}))).await;
    e.create(kubeflow_job("timed", json!({"spec": {"runPolicy": {"schedulingPolicy": {"minAvailable": 2, "scheduleTimeoutSeconds": 120, "queue": "ignored", "priorityClass": "ignored"}}}}))).await;
    e.create(t9k_job(
        "healthy",
        json!({"spec": {"scheduler": {"t9kScheduler": {"queue": "q"}}}}),
    ))
    .await;

    let expected = "PodGroup CRD podgroups.scheduling.x-k8s.io (scheduling.x-k8s.io/v1alpha1) is not installed, and --gang-scheduling scheduler-plugins-scheduler asks for it: install scheduler-plugins (its coscheduling plugin), or run the controller without --gang-scheduling; the pods are created once it is installed";
    let (status, message, _) = e.kubeflow_scheduled("pi", "PodGroupCRDMissing").await;
    assert_eq!((status.as_str(), message.as_str()), ("False", expected));
    e.wait_event("pi", &format!("PodGroupCRDMissing: {expected}"))
        .await;
    // The other job is served meanwhile.
    e.pods_named(&["healthy-launcher", "healthy-worker-0", "healthy-worker-1"])
        .await;
    e.group(T9K, "healthy").await;
    // No pod of the waiting job, and no launcher Job.
    let list = e
        .pods
        .list(&ListParams::default().labels("training.kubeflow.org/job-name=pi"))
        .await
        .unwrap();
    assert!(
        list.items.is_empty(),
        "{:?}",
        list.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );

    install(&e.client, PLUGINS).await;
    let g = e.group(PLUGINS, "pi").await;
    owned_by(&g, "MPIJob", "pi");
    assert_eq!(
        g.data["spec"],
        json!({"minMember": 3, "scheduleTimeoutSeconds": 0})
    );
    let g = e.group(PLUGINS, "timed").await;
    assert_eq!(
        g.data["spec"],
        json!({"minMember": 2, "scheduleTimeoutSeconds": 120})
    );
    for p in e.pods_named(&["pi-worker-0", "pi-worker-1"]).await {
        assert_in_gang(&p, PLUGINS, "pi", "scheduler-plugins-scheduler");
    }
    let (status, _, _) = e.kubeflow_scheduled("pi", "WaitingForGangScheduler").await;
    assert_eq!(status, "False");
}
