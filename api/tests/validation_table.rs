//! Every invalid input gets exactly one message that names the field, the
//! bad value and the fix. Each row changes one field of a valid job.

use mpijob_api::manifest;
use serde_json::{json, Value};

const BASE: &str = r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata:
  name: pi
spec:
  mca:
    btl: ^openib
  ssh:
    sshAuthMountPath: /root/.ssh
    sshdPath: /usr/sbin/sshd
  runPolicy:
    cleanUpWorkers: all
  mpiHome: /usr
  scheduler:
    t9kScheduler:
      queue: default
      priority: 50
  runMode:
    debug:
      enable: false
      replicaSpecs:
        - type: launcher
          command: [sleep, inf]
    pause:
      enable: false
      resumeSpecs:
        - type: worker
          command: [sleep]
          args: [inf]
  worker:
    replicas: 2
    extraMPIArgs: [-N, "1"]
    cmd: [/opt/pi]
    template:
      spec:
        containers:
          - name: mpi-worker
            image: mpijob/openmpi:latest
"#;

fn base() -> Value {
    mpijob_api::yaml::from_str(BASE).unwrap()
}

/// The same job in T9k's 2025 schema.
const BASE_2025: &str = r#"
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata:
  name: pi
spec:
  mpiConfig:
    home: /usr
    mca:
      btl: ^openib
    extraArgs: [-N, "1"]
    script: [/opt/pi]
  runPolicy:
    cleanUpWorkers: true
  replicaSpecs:
    - type: worker
      replicas: 2
      template:
        spec:
          containers:
            - name: mpi-worker
              image: mpijob/openmpi:latest
    - type: launcher
      replicas: 1
      template: {}
"#;

fn base_2025() -> Value {
    mpijob_api::yaml::from_str(BASE_2025).unwrap()
}

/// Set the value at a JSON pointer, creating objects on the way.
fn set(mut doc: Value, pointer: &str, value: Value) -> Value {
    let mut cur = &mut doc;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        cur = match cur {
            Value::Array(items) => {
                let idx: usize = part.parse().unwrap();
                if last {
                    items[idx] = value;
                    return doc;
                }
                &mut items[idx]
            }
            Value::Object(map) => {
                if last {
                    map.insert(part.to_string(), value);
                    return doc;
                }
                map.entry(part.to_string()).or_insert_with(|| json!({}))
            }
            other => panic!("cannot descend into {other}"),
        };
    }
    doc
}

fn remove(mut doc: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    doc.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    doc
}

fn errors_of(doc: &Value) -> Vec<String> {
    let text = mpijob_api::yaml::to_string(doc).unwrap();
    match manifest::parse(&text) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn the_base_job_is_valid() {
    assert_eq!(errors_of(&base()), Vec::<String>::new());
    assert_eq!(errors_of(&base_2025()), Vec::<String>::new());
}

#[test]
fn every_invalid_input_gets_its_exact_message() {
    let v = mpijob_api::contract::VERSION;
    let agent_version_error = format!(
        "metadata.annotations[\"batch.tensorstack.dev/agent-in-image\"]: \"0.0.9\" is not the agent version this controller runs, {v}: put agent {v} into the image (COPY --from=mpijob/agent:{v} /mpijob-agent /opt/mpijob/mpijob-agent) and set \"{v}\", or remove the annotation to have the agent copied into the pods"
    );
    let long = "a".repeat(55);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "replicas zero",
            set(base(), "/spec/worker/replicas", json!(0)),
            "spec.worker.replicas: must be at least 1, got 0",
        ),
        (
            "replicas negative",
            set(base(), "/spec/worker/replicas", json!(-3)),
            "spec.worker.replicas: must be at least 1, got -3",
        ),
        (
            "replicas absurdly large",
            set(base(), "/spec/worker/replicas", json!(2_000_000_000)),
            "spec.worker.replicas: must be at most 10000, got 2000000000",
        ),
        (
            "replicas not a number",
            set(base(), "/spec/worker/replicas", json!("two")),
            "spec.worker.replicas: invalid type: string \"two\", expected i32",
        ),
        (
            "cmd missing",
            remove(base(), "/spec/worker/cmd"),
            "spec.worker.cmd: must not be empty: give the command mpirun starts on every slot, e.g. [python, train.py] (or give it as spec.mpiConfig.script)",
        ),
        (
            "cmd empty",
            set(base(), "/spec/worker/cmd", json!([])),
            "spec.worker.cmd: must not be empty: give the command mpirun starts on every slot, e.g. [python, train.py] (or give it as spec.mpiConfig.script)",
        ),
        (
            "pre-2023: processesPerWorker zero",
            set(base(), "/spec/worker/processesPerWorker", json!(0)),
            "spec.worker.processesPerWorker: must be at least 1, got 0: it is the number of ranks on each worker",
        ),
        (
            "pre-2023: processRecovery limit negative",
            set(base(), "/spec/worker/processRecovery", json!({"enable": true, "limit": -1})),
            "spec.worker.processRecovery.limit: must be at least 0, got -1: it is how often a rank may be restarted",
        ),
        (
            "pre-2023: processRecovery and --enable-recovery",
            set(
                set(base(), "/spec/worker/processRecovery", json!({"enable": true})),
                "/spec/worker/extraMPIArgs",
                json!(["-N", "1", "--enable-recovery"]),
            ),
            "spec.worker.processRecovery: and spec.worker.extraMPIArgs[2] (--enable-recovery) both set up process recovery: keep one (processRecovery becomes --enable-recovery and --max-restarts)",
        ),
        (
            "eras mixed: worker.cmd and mpiConfig.script",
            set(base(), "/spec/mpiConfig/script", json!(["/opt/pi"])),
            "spec.mpiConfig.script: and spec.worker.cmd both give the command mpirun starts: keep one (spec.worker.cmd is the seed schema's field, spec.mpiConfig.script the 2025 schema's)",
        ),
        (
            "eras mixed: extraMPIArgs and mpiConfig.extraArgs",
            set(base(), "/spec/mpiConfig/extraArgs", json!(["-N", "1"])),
            "spec.mpiConfig.extraArgs: and spec.worker.extraMPIArgs both give mpirun's extra arguments: keep one (spec.worker.extraMPIArgs is the seed schema's field, spec.mpiConfig.extraArgs the 2025 schema's)",
        ),
        (
            "eras mixed: mca and mpiConfig.mca",
            set(base(), "/spec/mpiConfig/mca", json!({"pml": "ob1"})),
            "spec.mpiConfig.mca: and spec.mca both give the MCA parameters: keep one (spec.mca is the seed schema's field, spec.mpiConfig.mca the 2025 schema's)",
        ),
        (
            "eras mixed: mpiHome and mpiConfig.home",
            set(base(), "/spec/mpiConfig/home", json!("/usr/local")),
            "spec.mpiConfig.home: and spec.mpiHome both give the MPI installation: keep one (spec.mpiHome is the seed schema's field, spec.mpiConfig.home the 2025 schema's)",
        ),
        (
            "eras mixed: worker and replicaSpecs",
            set(base(), "/spec/replicaSpecs", json!([{"type": "worker", "replicas": 2, "template": {"spec": {"containers": [{"name": "w", "image": "i"}]}}}])),
            "spec.replicaSpecs[0]: and spec.worker both describe the workers: keep one (spec.worker is the seed schema's field, spec.replicaSpecs the 2025 schema's)",
        ),
        (
            "resumeSpecs: args without a command on a worker",
            set(base(), "/spec/runMode/pause/resumeSpecs/0/command", json!([])),
            "spec.runMode.pause.resumeSpecs[0].args: needs a command on a worker: a worker's normal command is the agent running sshd, which takes no arguments from here; give command and args, or neither",
        ),
        (
            "2025: worker replicas zero",
            set(base_2025(), "/spec/replicaSpecs/0/replicas", json!(0)),
            "spec.replicaSpecs[0].replicas: must be at least 1, got 0",
        ),
        (
            "2025: two launchers",
            set(base_2025(), "/spec/replicaSpecs/1/replicas", json!(2)),
            "spec.replicaSpecs[1].replicas: must be 1, got 2: a job has one launcher",
        ),
        (
            "2025: an unknown replica type",
            set(base_2025(), "/spec/replicaSpecs/1/type", json!("ps")),
            "spec.replicaSpecs[1].type: must be launcher, master or worker, got \"ps\"",
        ),
        (
            "2025: no worker entry",
            set(base_2025(), "/spec/replicaSpecs", json!([{"type": "launcher"}])),
            "spec.replicaSpecs: must have an entry of type worker: add {type: worker, replicas: 2, template: {spec: {containers: [...]}}}",
        ),
        (
            "2025: script empty",
            set(base_2025(), "/spec/mpiConfig/script", json!([])),
            "spec.mpiConfig.script: must not be empty: give the command mpirun starts on every slot, e.g. [python, train.py] (or give it as spec.worker.cmd)",
        ),
        (
            "2025: worker template without containers",
            set(base_2025(), "/spec/replicaSpecs/0/template/spec/containers", json!([])),
            "spec.replicaSpecs[0].template.spec.containers: must list at least one container: add the MPI container, named mpi-worker, with an image that has MPI and openssh-server",
        ),
        (
            "2025: a bad MCA key",
            set(base_2025(), "/spec/mpiConfig/mca", json!({"-pml": "ob1"})),
            "spec.mpiConfig.mca: key \"-pml\" must not start with '-': give the parameter name without dashes, e.g. pml",
        ),
        (
            "2025: a relative home",
            set(base_2025(), "/spec/mpiConfig/home", json!("usr")),
            "spec.mpiConfig.home: must be an absolute path, got \"usr\": write it from the root, e.g. /usr/local",
        ),
        (
            "2025: a bad -N in extraArgs",
            set(base_2025(), "/spec/mpiConfig/extraArgs", json!(["-N", "0"])),
            "spec.mpiConfig.extraArgs[1]: -N needs a whole number of processes of at least 1, got \"0\", e.g. [\"-N\", \"2\"]",
        ),
        (
            "cmd program empty",
            set(base(), "/spec/worker/cmd", json!(["", "x"])),
            "spec.worker.cmd[0]: must not be empty: it is the program mpirun starts, e.g. python",
        ),
        (
            "cmd with NUL",
            set(base(), "/spec/worker/cmd", json!(["/opt/pi", "a\u{0}b"])),
            "spec.worker.cmd[1]: must not contain a NUL byte, got \"a\\0b\"",
        ),
        (
            "extra arg with NUL",
            set(base(), "/spec/worker/extraMPIArgs", json!(["\u{0}"])),
            "spec.worker.extraMPIArgs[0]: must not contain a NUL byte, got \"\\0\"",
        ),
        (
            "ranks per worker that are not a number",
            set(base(), "/spec/worker/extraMPIArgs", json!(["-N", "two"])),
            "spec.worker.extraMPIArgs[1]: -N needs a whole number of processes of at least 1, got \"two\", e.g. [\"-N\", \"2\"]",
        ),
        (
            "relative sshdPath",
            set(base(), "/spec/ssh/sshdPath", json!("sbin/sshd")),
            "spec.ssh.sshdPath: must be an absolute path, got \"sbin/sshd\": write it from the root, e.g. /usr/sbin/sshd",
        ),
        (
            "relative sshAuthMountPath",
            set(base(), "/spec/ssh/sshAuthMountPath", json!(".ssh")),
            "spec.ssh.sshAuthMountPath: must be an absolute path, got \".ssh\": write it from the root, e.g. /root/.ssh",
        ),
        (
            "relative mpiHome",
            set(base(), "/spec/mpiHome", json!("usr/local")),
            "spec.mpiHome: must be an absolute path, got \"usr/local\": write it from the root, e.g. /usr/local",
        ),
        (
            "mpiHome with a newline",
            set(base(), "/spec/mpiHome", json!("/usr\n/local")),
            "spec.mpiHome: must be a single-line path, got \"/usr\\n/local\"",
        ),
        (
            "MCA key with white space",
            set(base(), "/spec/mca", json!({"btl tcp": "x"})),
            "spec.mca: key \"btl tcp\" must not contain white space: give one MCA parameter name per key, e.g. btl_tcp_if_include",
        ),
        (
            "MCA key with '='",
            set(base(), "/spec/mca", json!({"btl=tcp": "x"})),
            "spec.mca: key \"btl=tcp\" must not contain '=': put the value on the right, e.g. btl: ^openib",
        ),
        (
            "MCA key with a newline",
            set(base(), "/spec/mca", json!({"btl\npml": "x"})),
            "spec.mca: key \"btl\\npml\" must not contain a line break: give one MCA parameter name per key, e.g. btl_tcp_if_include",
        ),
        (
            "MCA key starting with '-'",
            set(base(), "/spec/mca", json!({"-x": "y"})),
            "spec.mca: key \"-x\" must not start with '-': give the parameter name without dashes, e.g. pml",
        ),
        (
            "MCA key with a control character (BEL)",
            set(base(), "/spec/mca", json!({"b\u{7}tl": "tcp"})),
            "spec.mca: key \"b\\u{7}tl\" contains '\\u{7}': MCA parameter names are letters, digits and '_', e.g. btl_tcp_if_include",
        ),
        (
            "MCA key with a dot",
            set(base(), "/spec/mca", json!({"btl.tcp": "x"})),
            "spec.mca: key \"btl.tcp\" contains '.': MCA parameter names are letters, digits and '_', e.g. btl_tcp_if_include",
        ),
        (
            "MCA value with a control character (BEL)",
            set(base(), "/spec/mca", json!({"btl": "tcp\u{7}"})),
            "spec.mca.btl: value must not contain the control character '\\u{7}', got \"tcp\\u{7}\": give printable text, e.g. ^openib",
        ),
        (
            "MCA key empty",
            set(base(), "/spec/mca", json!({"": "y"})),
            "spec.mca: key \"\" must not be empty: name an MCA parameter, e.g. btl",
        ),
        (
            "MCA value with a newline",
            set(base(), "/spec/mca", json!({"pml": "ob1\n--mca x y"})),
            "spec.mca.pml: value must not contain a line break, got \"ob1\\n--mca x y\": give the value on one line, e.g. ^openib",
        ),
        (
            "MCA value not a string",
            set(base(), "/spec/mca", json!({"pml": ["ob1"]})),
            "spec.mca.pml: invalid type: sequence, expected a string",
        ),
        (
            "priority over 100",
            set(base(), "/spec/scheduler/t9kScheduler/priority", json!(101)),
            "spec.scheduler.t9kScheduler.priority: must be between 0 and 100, got 101",
        ),
        (
            "priority negative",
            set(base(), "/spec/scheduler/t9kScheduler/priority", json!(-1)),
            "spec.scheduler.t9kScheduler.priority: must be between 0 and 100, got -1",
        ),
        (
            "queue missing",
            remove(base(), "/spec/scheduler/t9kScheduler/queue"),
            "spec.scheduler.t9kScheduler.queue: is required when t9kScheduler is set: name the queue to submit to, e.g. default",
        ),
        (
            "name too long for the worker names",
            set(set(base(), "/metadata/name", json!(long)), "/spec/worker/replicas", json!(11)),
            "metadata.name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is 55 characters, so pod name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-worker-10\" would be 65, over the 63-character DNS label limit: use a name of at most 53 characters",
        ),
        (
            "name too long for the launcher name",
            set(base(), "/metadata/name", json!(long)),
            "metadata.name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is 55 characters, so pod name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-launcher\" would be 64, over the 63-character DNS label limit: use a name of at most 54 characters",
        ),
        (
            "name not a DNS label",
            set(base(), "/metadata/name", json!("Pi_Job")),
            "metadata.name: \"Pi_Job\" is not a DNS label: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, e.g. pi-job",
        ),
        (
            "name starting with a digit",
            set(base(), "/metadata/name", json!("1pi")),
            "metadata.name: \"1pi\" is not a DNS label: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, e.g. pi-job",
        ),
        (
            "agent in the image of another release",
            set(
                base(),
                "/metadata/annotations",
                json!({"batch.tensorstack.dev/agent-in-image": "0.0.9"}),
            ),
            &agent_version_error,
        ),
        (
            "name missing",
            remove(base(), "/metadata/name"),
            "metadata.name: is required: name the job, e.g. pi",
        ),
        (
            "unknown debug replica type",
            set(base(), "/spec/runMode/debug/replicaSpecs/0/type", json!("ps")),
            "spec.runMode.debug.replicaSpecs[0].type: must be launcher, master or worker, got \"ps\"",
        ),
        (
            "unknown resume replica type",
            set(base(), "/spec/runMode/pause/resumeSpecs/0/type", json!("chief")),
            "spec.runMode.pause.resumeSpecs[0].type: must be launcher, master or worker, got \"chief\"",
        ),
        (
            "master and launcher both listed",
            set(
                base(),
                "/spec/runMode/debug/replicaSpecs",
                json!([{"type": "launcher"}, {"type": "master"}]),
            ),
            "spec.runMode.debug.replicaSpecs[1].type: launcher is listed twice: give each replica type once (master is launcher)",
        ),
        (
            "enable and enabled disagree",
            set(base(), "/spec/runMode/debug/enabled", json!(true)),
            "spec.runMode.debug: enable is false but enabled is true: set only one of them (enabled is the older spelling)",
        ),
        (
            "cleanUpWorkers neither form",
            set(base(), "/spec/runPolicy/cleanUpWorkers", json!("sometimes")),
            "spec.runPolicy.cleanUpWorkers: must be true, false, \"all\", \"unfinished\" or \"none\", got \"sometimes\"",
        ),
        (
            "cleanUpWorkers a number",
            set(base(), "/spec/runPolicy/cleanUpWorkers", json!(1)),
            "spec.runPolicy.cleanUpWorkers: must be true, false, \"all\", \"unfinished\" or \"none\", got 1",
        ),
        (
            "template without containers",
            set(base(), "/spec/worker/template", json!({"spec": {"containers": []}})),
            "spec.worker.template.spec.containers: must list at least one container: add the MPI container, named mpi-worker, with an image that has MPI and openssh-server",
        ),
        (
            "template with a malformed field",
            set(
                base(),
                "/spec/worker/template/spec/containers/0/ports",
                json!("2222"),
            ),
            "spec.worker.template.spec.containers[0].ports: invalid type: string \"2222\", expected a sequence",
        ),
        (
            "wrong kind",
            set(base(), "/kind", json!("Job")),
            "kind: must be MPIJob, got \"Job\"",
        ),
        (
            "wrong apiVersion",
            set(base(), "/apiVersion", json!("kubeflow.org/v1")),
            "apiVersion: \"kubeflow.org/v1\" is an older Kubeflow MPIJob version; the served versions are batch.tensorstack.dev/v1beta1 and kubeflow.org/v2beta1: convert it first, `mpijob-controller convert -f FILE` (it writes kubeflow.org/v2beta1)",
        ),
        (
            "unknown apiVersion",
            set(base(), "/apiVersion", json!("batch.tensorstack.dev/v1")),
            "apiVersion: must be batch.tensorstack.dev/v1beta1 or kubeflow.org/v2beta1, got \"batch.tensorstack.dev/v1\"",
        ),
    ];
    assert!(cases.len() >= 25);

    let mut failures = Vec::new();
    for (what, doc, expected) in &cases {
        let got = errors_of(doc);
        if got != vec![expected.to_string()] {
            failures.push(format!("{what}:\n   want [{expected}]\n   got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let doc = set(
        set(base(), "/spec/worker/replicas", json!(0)),
        "/spec/ssh/sshdPath",
        json!("sshd"),
    );
    assert_eq!(
        errors_of(&doc),
        vec![
            "spec.worker.replicas: must be at least 1, got 0".to_string(),
            "spec.ssh.sshdPath: must be an absolute path, got \"sshd\": write it from the root, e.g. /usr/sbin/sshd".to_string(),
        ]
    );
}
