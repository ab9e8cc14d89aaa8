use super::podgroups::spec_patch;
use super::*;
use mpijob_api::MPIJob;
use proptest::prelude::*;
use serde_json::json;

fn t9k_job(spec: &str, annotations: &str) -> MPIJob {
    let job: MPIJob = mpijob_api::yaml::from_str(&format!(
        "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata: {{name: pi, namespace: team, uid: u1, annotations: {{{annotations}}}}}\nspec:\n{spec}"
    ))
    .unwrap();
    job
}

/// [`for_t9k`] of `job`, resolved as the reconcile resolves it.
fn for_t9k_job(
    job: &MPIJob,
    flag: Option<&GangScheduling>,
    priorities: &BTreeMap<String, i32>,
) -> Option<Gang> {
    let r = mpijob_api::t9k::resolve(job).unwrap();
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    for_t9k("pi", &annotations, &r, flag, priorities)
}

const T9K_WORKERS: &str = "  worker:\n    replicas: 3\n    cmd: [/pi]\n    template:\n      spec:\n        priorityClassName: low\n        containers:\n          - name: mpi\n            image: mpi:1\n            resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: '1', nvidia.com/gpu: '1'}}\n";

fn kubeflow(
    run_policy: &str,
    extra_spec: &str,
    workers: u32,
) -> (mpijob_api::kubeflow::MPIJob, Resolved) {
    let text = format!(
        "apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata: {{name: pi, namespace: team}}\nspec:\n  runPolicy: {run_policy}\n{extra_spec}  mpiReplicaSpecs:\n    Launcher:\n      replicas: 1\n      template:\n        spec:\n          containers:\n            - {{name: l, image: mpi:1, resources: {{requests: {{cpu: '1', memory: 512Mi}}}}}}\n    Worker:\n      replicas: {workers}\n      template:\n        spec:\n          containers:\n            - {{name: w, image: mpi:1, resources: {{requests: {{cpu: '2', memory: 1Gi}}}}}}\n"
    );
    mpijob_api::kubeflow::parse(&text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn no_priorities() -> BTreeMap<String, i32> {
    BTreeMap::new()
}

#[test]
fn a_t9k_job_naming_the_t9k_scheduler_gets_its_podgroup_whatever_the_flag() {
    let job = t9k_job(
        &format!("  scheduler: {{t9kScheduler: {{queue: gpu, priority: 40}}}}\n{T9K_WORKERS}"),
        "",
    );
    for flag in [None, Some(GangScheduling::Volcano)] {
        let g = for_t9k_job(&job, flag.as_ref(), &no_priorities()).unwrap();
        assert_eq!(g.kind, Kind::T9k);
        assert_eq!(g.scheduler, "t9k-scheduler");
        assert_eq!(g.name, "pi");
        assert_eq!(g.asked_by, "spec.scheduler.t9kScheduler");
        assert_eq!(
            Value::Object(g.spec.clone()),
            json!({
                "minMember": 4,
                "roles": [{"name": "launcher", "minMember": 1}, {"name": "worker", "minMember": 3}],
                "queue": "gpu",
                "priority": 40,
            })
        );
        let mut meta = ObjectMeta::default();
        let mut spec = PodSpec {
            scheduler_name: Some("default-scheduler".into()),
            ..PodSpec::default()
        };
        decorate(&g, &mut meta, &mut spec);
        assert_eq!(spec.scheduler_name.as_deref(), Some("t9k-scheduler"));
        assert_eq!(
            meta.labels.unwrap()["scheduler.tensorstack.dev/group-name"],
            "pi"
        );
        assert!(meta.annotations.is_none());
    }
}

#[test]
fn a_t9k_job_runs_under_volcano_with_the_flag_and_under_nothing_without() {
    let job = t9k_job(T9K_WORKERS, "scheduling.volcano.sh/queue-name: research");
    assert_eq!(for_t9k_job(&job, None, &no_priorities()), None);
    let g = for_t9k_job(&job, Some(&GangScheduling::Volcano), &no_priorities()).unwrap();
    assert_eq!(g.kind, Kind::Volcano);
    assert_eq!(g.asked_by, "--gang-scheduling volcano");
    // The launcher shares the workers' template: four pods' requests,
    // limits where nothing is requested.
    assert_eq!(
        Value::Object(g.spec.clone()),
        json!({
            "minMember": 4,
            "queue": "research",
            "priorityClassName": "low",
            "minResources": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "4"},
        })
    );
    let mut meta = ObjectMeta::default();
    let mut spec = PodSpec::default();
    decorate(&g, &mut meta, &mut spec);
    assert_eq!(spec.scheduler_name.as_deref(), Some("volcano"));
    assert_eq!(
        meta.annotations.unwrap()["scheduling.k8s.io/group-name"],
        "pi"
    );
}

#[test]
fn kubeflow_under_volcano_fills_the_podgroup_as_mpi_operator_does() {
    // Nothing given: workers + 1, the summed requests, the annotation's
    // queue, no priority class.
    let (mut job, r) = kubeflow("{}", "", 2);
    job.metadata.annotations = Some(BTreeMap::from([(
        VOLCANO_QUEUE_ANNOTATION.to_string(),
        "annotated".to_string(),
    )]));
    let annotations = job.metadata.annotations.clone().unwrap();
    let g = for_kubeflow(
        "pi",
        &annotations,
        &r,
        Some(&GangScheduling::Volcano),
        &no_priorities(),
    )
    .unwrap();
    assert_eq!(
        Value::Object(g.spec),
        json!({"minMember": 3, "queue": "annotated", "minResources": {"cpu": "5", "memory": "2560Mi"}})
    );
    // Everything given: the policy wins over the annotation and the
    // templates.
    let (_, r) = kubeflow(
        "{schedulingPolicy: {minAvailable: 2, queue: q1, priorityClass: high, minResources: {cpu: '7'}, scheduleTimeoutSeconds: 30}}",
        "",
        2,
    );
    let g = for_kubeflow(
        "pi",
        &annotations,
        &r,
        Some(&GangScheduling::Volcano),
        &no_priorities(),
    )
    .unwrap();
    assert_eq!(
        Value::Object(g.spec),
        json!({"minMember": 2, "queue": "q1", "priorityClassName": "high", "minResources": {"cpu": "7"}})
    );
    // No flag, no gang, whatever the policy says.
    assert_eq!(
        for_kubeflow("pi", &annotations, &r, None, &no_priorities()),
        None
    );
}

#[test]
fn kubeflow_under_scheduler_plugins_fills_its_podgroup_as_mpi_operator_does() {
    let flag = GangScheduling::parse("scheduler-plugins-scheduler").unwrap();
    let (_, r) = kubeflow("{}", "", 2);
    let g = for_kubeflow("pi", &BTreeMap::new(), &r, Some(&flag), &no_priorities()).unwrap();
    assert_eq!(g.kind, Kind::SchedulerPlugins);
    assert_eq!(g.scheduler, "scheduler-plugins-scheduler");
    assert_eq!(
        Value::Object(g.spec.clone()),
        json!({"minMember": 3, "scheduleTimeoutSeconds": 0, "minResources": {"cpu": "5", "memory": "2560Mi"}})
    );
    // minAvailable 2 counts the launcher and one worker.
    let (_, r) = kubeflow(
        "{schedulingPolicy: {minAvailable: 2, queue: ignored, priorityClass: ignored, scheduleTimeoutSeconds: 120}}",
        "",
        2,
    );
    let g = for_kubeflow("pi", &BTreeMap::new(), &r, Some(&flag), &no_priorities()).unwrap();
    assert_eq!(
        Value::Object(g.spec.clone()),
        json!({"minMember": 2, "scheduleTimeoutSeconds": 120, "minResources": {"cpu": "3", "memory": "1536Mi"}})
    );
    let mut meta = ObjectMeta::default();
    let mut spec = PodSpec::default();
    decorate(&g, &mut meta, &mut spec);
    assert_eq!(meta.labels.unwrap()["scheduling.x-k8s.io/pod-group"], "pi");
    assert_eq!(
        spec.scheduler_name.as_deref(),
        Some("scheduler-plugins-scheduler")
    );
}

#[test]
fn min_resources_count_the_higher_priority_pods_first() {
    let pod = |class: &str, cpu: &str| -> PodSpec {
        serde_json::from_value(json!({"priorityClassName": class, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]})).unwrap()
    };
    let (launcher, worker) = (pod("l", "1"), pod("w", "10"));
    let m = Members {
        launcher: Some(&launcher),
        worker: Some(&worker),
        workers: 4,
        launcher_waits: false,
    };
    assert_eq!(m.priority_classes(), vec!["l".to_string(), "w".to_string()]);
    let cpu = |p: &BTreeMap<String, i32>, min| m.min_resources(min, p).unwrap()["cpu"].clone();
    // Equal priority: the launcher, then the workers.
    assert_eq!(cpu(&no_priorities(), 3), "21");
    // Workers first: three of them, no launcher.
    let workers_first = BTreeMap::from([("w".to_string(), 100), ("l".to_string(), 1)]);
    assert_eq!(cpu(&workers_first, 3), "30");
    assert_eq!(cpu(&workers_first, 5), "41");
    let launcher_first = BTreeMap::from([("l".to_string(), 100)]);
    assert_eq!(cpu(&launcher_first, 2), "11");
    // A launcher created after the workers is not counted.
    let late = Members {
        launcher_waits: true,
        ..m.clone()
    };
    assert_eq!(late.at_once(), 4);
    assert_eq!(
        late.min_resources(4, &no_priorities()).unwrap()["cpu"],
        "40"
    );
}

#[test]
fn wait_for_workers_ready_leaves_the_launcher_out_of_the_gang() {
    let (_, r) = kubeflow("{}", "  launcherCreationPolicy: WaitForWorkersReady\n", 3);
    let g = for_kubeflow(
        "pi",
        &BTreeMap::new(),
        &r,
        Some(&GangScheduling::Volcano),
        &no_priorities(),
    )
    .unwrap();
    assert_eq!(g.min_member, 3);
    assert_eq!(g.spec["minResources"], json!({"cpu": "6", "memory": "3Gi"}));
}

proptest! {
    /// No deadlock: whatever a valid job says, its gang's minimum never
    /// exceeds the pods that exist before any of them runs (a
    /// WaitForWorkersReady launcher is created only after the workers
    /// run, so it does not count), and a job that would need more is
    /// refused before any pod is created.
    #[test]
    fn a_gang_never_waits_for_a_pod_that_waits_for_the_gang(
        workers in 1u32..40,
        wait in any::<bool>(),
        as_worker in any::<bool>(),
        min_available in prop::option::of(0i32..45),
        plugins in any::<bool>(),
    ) {
        let policy = if wait { "WaitForWorkersReady" } else { "AtStartup" };
        let run_policy = match min_available {
            Some(n) => format!("{{schedulingPolicy: {{minAvailable: {n}}}}}"),
            None => "{}".to_string(),
        };
        let extra = format!("  launcherCreationPolicy: {policy}\n  runLauncherAsWorker: {as_worker}\n");
        let text = format!(
            "apiVersion: kubeflow.org/v2beta1\nkind: MPIJob\nmetadata: {{name: pi, namespace: team}}\nspec:\n  runPolicy: {run_policy}\n{extra}  mpiReplicaSpecs:\n    Launcher:\n      template: {{spec: {{containers: [{{name: l, image: i}}]}}}}\n    Worker:\n      replicas: {workers}\n      template: {{spec: {{containers: [{{name: w, image: i}}]}}}}\n"
        );
        let flag = if plugins { GangScheduling::parse("sp").unwrap() } else { GangScheduling::Volcano };
        // What exists before any pod runs, from the policy's meaning.
        let before_running = workers as i32 + if wait { 0 } else { 1 };
        match mpijob_api::kubeflow::parse(&text) {
            Ok((_, r)) => {
                let g = for_kubeflow("pi", &BTreeMap::new(), &r, Some(&flag), &no_priorities()).unwrap();
                prop_assert!(g.min_member <= before_running, "minMember {} > {before_running}", g.min_member);
                prop_assert_eq!(g.spec["minMember"].as_i64(), Some(i64::from(g.min_member)));
            }
            Err(errors) => {
                // Refused only for a minimum no gang could reach.
                let n = min_available.expect("only minAvailable can be wrong here");
                prop_assert!(n < 1 || n > before_running, "{n} refused: {errors:?}");
                prop_assert!(errors.0.iter().all(|e| e.to_string().starts_with("spec.runPolicy.schedulingPolicy.minAvailable: ")));
            }
        }
    }
}

fn pod(name: &str, node: Option<&str>, scheduled: Option<(&str, &str)>) -> Pod {
    let mut p: Pod =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": []}}))
            .unwrap();
    p.spec.as_mut().unwrap().node_name = node.map(Into::into);
    if let Some((status, message)) = scheduled {
        p.status = Some(serde_json::from_value(json!({"conditions": [{"type": "PodScheduled", "status": status, "message": message}]})).unwrap());
    }
    p
}

#[test]
fn the_condition_names_the_scheduler_and_what_it_said() {
    let job = t9k_job(T9K_WORKERS, "");
    let g = for_t9k_job(&job, Some(&GangScheduling::Volcano), &no_priorities()).unwrap();
    let state = State::Ready(g.clone());
    assert_eq!(condition(&state, &[]), None);

    let (a, b) = (pod("a", None, None), pod("b", None, None));
    let (placed, why, message) = condition(&state, &[&a, &b]).unwrap();
    assert!(!placed);
    assert_eq!(why, "WaitingForGangScheduler");
    assert_eq!(message, "2 of 2 pods wait for the gang scheduler volcano, which starts PodGroup pi (minMember 4) only when all of its pods fit at once; no scheduler has looked at them yet: check that volcano runs in the cluster");

    let refused = pod(
        "b",
        None,
        Some((
            "False",
            "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
        )),
    );
    let c = pod("c", Some("node1"), None);
    let (_, _, message) = condition(&state, &[&c, &refused]).unwrap();
    assert_eq!(message, "1 of 2 pods wait for the gang scheduler volcano, which starts PodGroup pi (minMember 4) only when all of its pods fit at once; volcano says: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.");

    let d = pod("d", None, Some(("True", "")));
    assert_eq!(
        condition(&state, &[&c, &d]).unwrap(),
        (
            true,
            "GangScheduled",
            "volcano placed all 2 pods of PodGroup pi".to_string()
        )
    );

    let missing = missing(&g);
    assert_eq!(missing, "PodGroup CRD podgroups.scheduling.volcano.sh (scheduling.volcano.sh/v1beta1) is not installed, and --gang-scheduling volcano asks for it: install Volcano, or run the controller without --gang-scheduling; the pods are created once it is installed");
    assert_eq!(
        condition(&State::Missing(missing.clone()), &[]),
        Some((false, "PodGroupCRDMissing", missing))
    );
    let t9k = for_t9k_job(
        &t9k_job(
            &format!("  scheduler: {{t9kScheduler: {{queue: q}}}}\n{T9K_WORKERS}"),
            "",
        ),
        None,
        &no_priorities(),
    )
    .unwrap();
    assert!(super::missing(&t9k).contains("spec.scheduler.t9kScheduler asks for it: install the T9k scheduler, or remove spec.scheduler.t9kScheduler"));
}

#[test]
fn only_the_fields_we_set_are_patched() {
    let want = object(json!({"minMember": 3, "queue": "q"}));
    let have =
        json!({"minMember": 3, "queue": "q", "minResources": {"cpu": "1"}, "somethingElse": 1});
    assert_eq!(
        spec_patch(Kind::Volcano, &have, &want),
        json!({"minResources": null})
    );
    let have = json!({"minMember": 3, "queue": "q", "somethingElse": 1});
    assert_eq!(spec_patch(Kind::Volcano, &have, &want), json!({}));
}

#[test]
fn the_flag_takes_volcano_or_a_scheduler_name() {
    assert_eq!(
        GangScheduling::parse("volcano"),
        Ok(GangScheduling::Volcano)
    );
    assert_eq!(
        GangScheduling::parse("scheduler-plugins-scheduler"),
        Ok(GangScheduling::SchedulerPlugins(
            "scheduler-plugins-scheduler".into()
        ))
    );
    let e = GangScheduling::parse("Bad Name").unwrap_err();
    assert!(
        e.starts_with("\"Bad Name\" is not a scheduler name: give volcano, or the schedulerName"),
        "{e}"
    );
}
