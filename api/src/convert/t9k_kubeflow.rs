//! T9k `v1beta1` and Kubeflow `v2beta1`, both ways.
//!
//! | T9k | Kubeflow |
//! |---|---|
//! | `worker.replicas`, `worker.template` | `mpiReplicaSpecs.Worker` |
//! | the launcher's template (the workers', or 2025's own) | `mpiReplicaSpecs.Launcher.template` |
//! | `mpiHome`, `mca`, `worker.extraMPIArgs`, `worker.cmd` | the launcher container's `[<mpiHome>/bin/mpirun, --mca K V…, ARGS…, CMD…]` |
//! | slots from `extraMPIArgs` or `processesPerWorker` | `slotsPerWorker` (and `-N` back, when nothing else asks) |
//! | `ssh.sshdPath` | the worker container's `[sshdPath, -De]` |
//! | `ssh.sshAuthMountPath` | `sshAuthMountPath` |
//! | `runPolicy.cleanUpWorkers` all / unfinished / none | `runPolicy.cleanPodPolicy` All / Running / None |
//! | `runMode.pause.enable` | `runPolicy.suspend` |
//!
//! In a Kubeflow job the MPI container is the first; in a T9k one it is
//! `mpi-worker`, or the first. T9k's agent lets Open MPI run as root; a
//! Kubeflow launcher gets `OMPI_ALLOW_RUN_AS_ROOT{,_CONFIRM}=1` for that,
//! which MPICH ignores.

use serde_json::{json, Map, Value};

use super::mpirun::{self, Split};
use super::Note;
use crate::contract::{self, DEFAULT_SSHD_PATH, DEFAULT_SSH_AUTH_MOUNT_PATH};
use crate::t9k::defaults;
use crate::t9k::v1beta1::{CleanUpWorkers, MPIJob, MPIJobSpec};
use crate::{slots, FieldError, FieldErrors};

/// The variables that let Open MPI's mpirun run as root.
const RUN_AS_ROOT: [(&str, &str); 2] = [
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
];

fn error(path: &str, message: impl Into<String>) -> FieldErrors {
    FieldErrors(vec![FieldError::new(path, message)])
}

/// The metadata a converted manifest keeps: name, namespace, labels and
/// annotations; not what the API server set.
fn kept_metadata(meta: &Value) -> Value {
    let mut out = Map::new();
    for key in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = meta.get(key).filter(|v| !v.is_null()) {
            out.insert(key.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

fn metadata_of(job: &MPIJob) -> Value {
    kept_metadata(&serde_json::to_value(&job.metadata).expect("metadata serialises"))
}

/// A T9k manifest of any era, normalised: the seed schema, or the 2025
/// one when the launcher has its own template.
pub fn t9k_normalised(text: &str, notes: &mut Vec<Note>) -> Result<Value, FieldErrors> {
    let job = crate::manifest::parse(text)?;
    Ok(t9k_manifest(metadata_of(&job), job.spec, notes))
}

/// The manifest of a normalised spec.
fn t9k_manifest(metadata: Value, mut spec: MPIJobSpec, notes: &mut Vec<Note>) -> Value {
    if !spec.replica_specs.is_empty() {
        // The launcher's own template needs the 2025 schema, which has no
        // processesPerWorker: mpirun is asked for them with -N instead.
        let w = spec.worker_mut();
        if let Some(n) = w.processes_per_worker.take() {
            let asks = slots::request(slots::FIELD, &w.extra_mpi_args)
                .is_ok_and(|r| r.per_worker.is_some());
            if !asks {
                w.extra_mpi_args.extend(["-N".to_string(), n.to_string()]);
            }
            notes.push(Note::new(
                "spec.worker.processesPerWorker",
                format!("given to mpirun as -N {n}: the 2025 schema, needed for the launcher's own template, has no processesPerWorker"),
            ));
        }
    }
    let mut value = serde_json::to_value(&spec).expect("a spec serialises");
    if !spec.replica_specs.is_empty() {
        let w = spec.worker();
        let obj = value.as_object_mut().expect("a spec is an object");
        obj.remove("worker");
        obj.remove("mca");
        obj.remove("mpiHome");
        let mut config = json!({"script": w.cmd});
        if !w.extra_mpi_args.is_empty() {
            config["extraArgs"] = json!(w.extra_mpi_args);
        }
        if !spec.mca.is_empty() {
            config["mca"] = json!(spec.mca);
        }
        if let Some(home) = &spec.mpi_home {
            config["home"] = json!(home);
        }
        obj.insert("mpiConfig".into(), config);
        let launcher = &spec.replica_specs[0];
        obj.insert(
            "replicaSpecs".into(),
            json!([
                {"type": "worker", "replicas": w.replicas, "template": w.template},
                {"type": "launcher", "replicas": 1, "template": launcher.template},
            ]),
        );
    }
    json!({
        "apiVersion": crate::manifest::API_VERSION,
        "kind": "MPIJob",
        "metadata": metadata,
        "spec": value,
    })
}

/// The containers of a template, as JSON.
fn containers(template: &mut Value) -> Option<&mut Vec<Value>> {
    template.pointer_mut("/spec/containers")?.as_array_mut()
}

/// Move the T9k MPI container (`mpi-worker`, or the first) to the front,
/// where Kubeflow looks for it.
fn mpi_container_first(template: &mut Value, at: &str, notes: &mut Vec<Note>) {
    let Some(cs) = containers(template) else {
        return;
    };
    let i = cs
        .iter()
        .position(|c| c["name"] == contract::MPI_CONTAINER)
        .unwrap_or(0);
    if i > 0 {
        let c = cs.remove(i);
        cs.insert(0, c);
        notes.push(Note::new(
            format!("{at}.spec.containers[{i}]"),
            "moved first: Kubeflow runs MPI in the first container",
        ));
    }
}

/// Set the first container's command and args; `None` removes them.
fn set_command(template: &mut Value, command: Option<(Vec<String>, Vec<String>)>) {
    let Some(c) = containers(template).and_then(|cs| cs.first_mut()) else {
        return;
    };
    let c = c.as_object_mut().expect("a container is an object");
    c.remove("command");
    c.remove("args");
    if let Some((command, args)) = command {
        c.insert("command".into(), json!(command));
        if !args.is_empty() {
            c.insert("args".into(), json!(args));
        }
    }
}

/// Convert a T9k manifest (any era) to Kubeflow `v2beta1`.
pub fn to_kubeflow(text: &str, notes: &mut Vec<Note>) -> Result<Value, FieldErrors> {
    let job = crate::manifest::parse(text)?;
    let s = &job.spec;
    let w = s.worker();
    let workers = u32::try_from(w.replicas).unwrap_or(1);
    let slots = slots::of_valid(&w.extra_mpi_args, workers, w.processes_per_worker);

    let mut worker = w.template.0.clone();
    mpi_container_first(&mut worker, "spec.worker.template", notes);
    set_command(
        &mut worker,
        Some((vec![s.ssh.sshd_path.clone(), "-De".into()], Vec::new())),
    );
    notes.push(Note::new(
        "spec.worker.template",
        format!(
            "its MPI container now runs the image's own sshd ({} -De), as Kubeflow workers do: the image must set sshd up itself (host keys, the authorized keys mounted at {}), which T9k's agent did for it",
            s.ssh.sshd_path, s.ssh.ssh_auth_mount_path
        ),
    ));

    let mut launcher = s.launcher_template().0.clone();
    let at = if s.replica_specs.is_empty() {
        "spec.worker.template"
    } else {
        "spec.replicaSpecs[launcher].template"
    };
    mpi_container_first(&mut launcher, at, notes);
    let split = Split {
        mpirun: s.mpi_home.as_ref().map_or("mpirun".to_string(), |h| {
            format!("{}/bin/mpirun", h.trim_end_matches('/'))
        }),
        mca: s.mca.clone(),
        options: w.extra_mpi_args.clone(),
        program: w.cmd.clone(),
    };
    let argv = mpirun::join(&split);
    if mpirun::split(&argv).as_ref() != Some(&split) {
        notes.push(Note::new(
            "spec.worker.extraMPIArgs",
            "holds an option that may take a value the converter does not know of: check where the launcher's args end and the program begins",
        ));
    }
    set_command(
        &mut launcher,
        Some((vec![argv[0].clone()], argv[1..].to_vec())),
    );
    if let Some(c) = containers(&mut launcher).and_then(|cs| cs.first_mut()) {
        let env = c
            .as_object_mut()
            .expect("a container is an object")
            .entry("env")
            .or_insert_with(|| json!([]));
        if let Some(env) = env.as_array_mut() {
            for (name, value) in RUN_AS_ROOT {
                if !env.iter().any(|e| e["name"] == name) {
                    env.push(json!({"name": name, "value": value}));
                }
            }
        }
    }

    let clean = match defaults::clean_up_workers(s) {
        CleanUpWorkers::All => "All",
        CleanUpWorkers::Unfinished => "Running",
        _ => "None",
    };
    let mut run_policy = json!({"cleanPodPolicy": clean});
    if defaults::pause_enabled(s) {
        run_policy["suspend"] = json!(true);
    }
    let mode = s.run_mode.clone().unwrap_or_default();
    if let Some(debug) = &mode.debug {
        if defaults::debug_enabled(s) || !debug.replica_specs.is_empty() {
            notes.push(Note::new(
                "spec.runMode.debug",
                "not carried over: Kubeflow's MPIJob has no debug mode",
            ));
        }
    }
    if mode.pause.is_some_and(|p| !p.resume_specs.is_empty()) {
        notes.push(Note::new(
            "spec.runMode.pause.resumeSpecs",
            "not carried over: a suspended Kubeflow MPIJob resumes with the pods it had",
        ));
    }
    if s.scheduler
        .as_ref()
        .is_some_and(|x| x.t9k_scheduler.is_some())
    {
        notes.push(Note::new(
            "spec.scheduler.t9kScheduler",
            "not carried over: Kubeflow's MPIJob names no scheduler; gang scheduling goes through runPolicy.schedulingPolicy and the controller's --gang-scheduling flag",
        ));
    }
    let mut spec = json!({
        "slotsPerWorker": slots,
        "runPolicy": run_policy,
        "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "template": launcher},
            "Worker": {"replicas": w.replicas, "template": worker},
        },
    });
    if s.ssh.ssh_auth_mount_path != DEFAULT_SSH_AUTH_MOUNT_PATH {
        spec["sshAuthMountPath"] = json!(s.ssh.ssh_auth_mount_path);
    }
    Ok(json!({
        "apiVersion": crate::kubeflow::API_VERSION,
        "kind": "MPIJob",
        "metadata": metadata_of(&job),
        "spec": spec,
    }))
}

/// Convert a Kubeflow `v2beta1` manifest to T9k.
pub fn to_t9k(text: &str, notes: &mut Vec<Note>) -> Result<Value, FieldErrors> {
    let (job, _) = crate::kubeflow::parse(text)?;
    let s = &job.spec;
    let base = "spec.mpiReplicaSpecs";
    let replica = |kind: &str| s.mpi_replica_specs.get(kind);
    let Some(worker_spec) = replica("Worker") else {
        return Err(error(
            &format!("{base}.Worker"),
            "is needed to convert to T9k: its launcher runs no ranks, so a T9k job has at least one worker",
        ));
    };
    let Some(launcher_spec) = replica("Launcher") else {
        return Err(error(&format!("{base}.Launcher"), "is required"));
    };
    let first = |t: &Value, key: &str| -> Vec<String> {
        t.pointer(&format!("/spec/containers/0/{key}"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    };

    // The launcher's command line: mpirun, its options, the program.
    let launcher_at = format!("{base}.Launcher.template.spec.containers[0]");
    let lt = &launcher_spec.template.0;
    let argv: Vec<String> = first(lt, "command")
        .into_iter()
        .chain(first(lt, "args"))
        .collect();
    let Some(mut split) = mpirun::split(&argv) else {
        return Err(error(
            &format!("{launcher_at}.command"),
            format!(
                "must start with mpirun (or mpiexec) to convert to T9k, whose launcher runs mpirun itself and takes the program it starts; got {:?}",
                argv.first().map(String::as_str).unwrap_or("the image's entrypoint")
            ),
        ));
    };
    if split.program.is_empty() {
        return Err(error(
            &format!("{launcher_at}.args"),
            "name no program after mpirun's options: T9k's worker.cmd must not be empty",
        ));
    }
    let mpi_home = mpirun::home_of(&split.mpirun);
    if mpi_home.is_none() && split.mpirun.contains('/') {
        notes.push(Note::new(
            format!("{launcher_at}.command[0]"),
            format!(
                "{} is not <home>/bin/mpirun: mpirun is looked up on PATH",
                split.mpirun
            ),
        ));
    }
    let mut options = Vec::new();
    let mut i = 0;
    while i < split.options.len() {
        let o = split.options[i].as_str();
        let hostfile = matches!(
            o,
            "--hostfile"
                | "-hostfile"
                | "--machinefile"
                | "-machinefile"
                | "-f"
                | "--default-hostfile"
        );
        if hostfile {
            notes.push(Note::new(
                format!("{launcher_at}.args"),
                format!("{o} and its file left out: T9k's agent writes the hostfile"),
            ));
            i += 1;
        } else {
            options.push(split.options[i].clone());
        }
        i += 1;
    }
    split.options = options;
    let workers = worker_spec.replicas.unwrap_or(1);
    if let Some(n) = s.slots_per_worker.filter(|n| *n > 1) {
        let asks = slots::request(slots::FIELD, &split.options)
            .is_ok_and(|r| r.per_worker.is_some() || r.total.is_some());
        if !asks {
            split.options.extend(["-N".to_string(), n.to_string()]);
        }
    }

    // The templates, without what Kubeflow put in for its own roles.
    let mut worker = worker_spec.template.0.clone();
    let worker_command: Vec<String> = first(&worker, "command")
        .into_iter()
        .chain(first(&worker, "args"))
        .collect();
    let mut sshd_path = DEFAULT_SSHD_PATH.to_string();
    if !worker_command.is_empty() {
        if worker_command[0].ends_with("sshd") && worker_command[0].starts_with('/') {
            sshd_path = worker_command[0].clone();
        }
        notes.push(Note::new(
            format!("{base}.Worker.template.spec.containers[0].command"),
            format!(
                "not carried over ({}): T9k workers run sshd ({sshd_path}) through the agent, which sets it up",
                worker_command.join(" ")
            ),
        ));
    }
    set_command(&mut worker, None);
    let mut launcher = lt.clone();
    set_command(&mut launcher, None);
    if let Some(c) = containers(&mut launcher).and_then(|cs| cs.first_mut()) {
        if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
            env.retain(|e| {
                !RUN_AS_ROOT
                    .iter()
                    .any(|(n, v)| e["name"] == *n && e["value"] == *v)
            });
            if env.is_empty() {
                c.as_object_mut().unwrap().remove("env");
            }
        }
    }

    let rp = &s.run_policy;
    let clean = match rp.clean_pod_policy.as_deref() {
        Some("All") => "all",
        Some("Running") => "unfinished",
        _ => "none",
    };
    for (field, given, why) in [
        (
            "backoffLimit",
            rp.backoff_limit.is_some(),
            "T9k jobs are not retried",
        ),
        (
            "activeDeadlineSeconds",
            rp.active_deadline_seconds.is_some(),
            "T9k jobs have no deadline",
        ),
        (
            "ttlSecondsAfterFinished",
            rp.ttl_seconds_after_finished.is_some(),
            "T9k jobs are kept until deleted",
        ),
        (
            "schedulingPolicy",
            rp.scheduling_policy.is_some(),
            "T9k schedules through spec.scheduler.t9kScheduler, a different scheduler",
        ),
        (
            "managedBy",
            rp.managed_by.is_some(),
            "T9k jobs are always run by this controller",
        ),
    ] {
        if given {
            notes.push(Note::new(
                format!("spec.runPolicy.{field}"),
                format!("not carried over: {why}"),
            ));
        }
    }
    if let Some(i) = s.mpi_implementation.as_deref().filter(|i| *i != "OpenMPI") {
        notes.push(Note::new(
            "spec.mpiImplementation",
            format!("not carried over ({i}): T9k's agent asks mpirun which MPI it is; converting back to Kubeflow gives OpenMPI unless it is set again"),
        ));
    }
    if s.run_launcher_as_worker == Some(true) {
        notes.push(Note::new(
            "spec.runLauncherAsWorker",
            "not carried over: a T9k launcher runs no ranks",
        ));
    }
    if s.launcher_creation_policy.as_deref() == Some("WaitForWorkersReady") {
        notes.push(Note::new(
            "spec.launcherCreationPolicy",
            "not carried over: a T9k launcher starts with the workers and waits for them itself",
        ));
    }
    for (kind, r) in [("Launcher", launcher_spec), ("Worker", worker_spec)] {
        if r.restart_policy.as_deref() == Some("OnFailure") {
            notes.push(Note::new(
                format!("{base}.{kind}.restartPolicy"),
                "not carried over: T9k pods are never restarted",
            ));
        }
    }

    let mut spec = json!({
        "worker": {
            "replicas": workers,
            "cmd": split.program,
            "template": worker,
        },
        "ssh": {
            "sshAuthMountPath": s.ssh_auth_mount_path.clone().unwrap_or_else(|| DEFAULT_SSH_AUTH_MOUNT_PATH.into()),
            "sshdPath": sshd_path,
        },
        "runPolicy": {"cleanUpWorkers": clean},
    });
    if !split.options.is_empty() {
        spec["worker"]["extraMPIArgs"] = json!(split.options);
    }
    if !split.mca.is_empty() {
        spec["mca"] = json!(split.mca);
    }
    if let Some(home) = mpi_home {
        spec["mpiHome"] = json!(home);
    }
    if launcher != worker {
        spec["replicaSpecs"] = json!([{"type": "launcher", "template": launcher}]);
    }
    if rp.suspend == Some(true) {
        spec["runMode"] = json!({"pause": {"enable": true}});
    }
    let mut typed: MPIJobSpec = serde_json::from_value(spec)
        .map_err(|e| error("spec", format!("cannot be built for T9k: {e}")))?;
    defaults::normalize(&mut typed);
    let metadata =
        kept_metadata(&serde_json::to_value(&job.metadata).expect("metadata serialises"));
    Ok(t9k_manifest(metadata, typed, notes))
}
