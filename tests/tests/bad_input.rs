//! Bad input as a user sends it, through `kubectl apply` against the real
//! API server with the controller running: each case is refused by the
//! API server with a message that names the field, or becomes a `Failed`
//! job with the exact message, or (where nothing is wrong for Kubernetes,
//! MPI or the kernel) is served. A healthy job next to them is served
//! throughout.

use kube::api::ListParams;
use kube::ResourceExt;
use mpijob_api::t9k::v1beta1::{ConditionType, Phase};
use mpijob_api::MPIJob;
use mpijob_tests::controller::wait_for;
use mpijob_tests::fixtures::pi_job;
use mpijob_tests::{Env, T};
use serde_json::{json, Value};

/// What a case must come to.
enum Want {
    /// `kubectl apply` fails, and its error contains all of these.
    Refused(&'static [&'static str]),
    /// The job is `Failed` with this message (reason `InvalidSpec`).
    Failed(String),
    /// The job gets its pods.
    Served,
}

fn with(name: &str, pointer: &str, value: Value) -> Value {
    let mut j = pi_job(name);
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    j.pointer_mut(parent).unwrap()[key] = value;
    j
}

#[tokio::test]
async fn bad_input_through_kubectl_is_refused_or_failed_and_a_healthy_job_is_served() {
    let e = Env::<MPIJob>::new("bad-input").await;
    let _c = e.controller();
    let dir = std::env::temp_dir().join(format!("mpijob-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // `kubectl apply`, or `kubectl create` for a name ending in -create:
    // apply keeps a copy of the object in an annotation, limited to 256 KiB.
    let apply = |name: &str, doc: &Value| {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(doc).unwrap()).unwrap();
        let verb = if name.ends_with("-create") {
            "create"
        } else {
            "apply"
        };
        e.harness
            .kubectl(&[verb, "-n", &e.ns.name, "-f", file.to_str().unwrap()])
    };

    let healthy = apply("healthy", &pi_job("healthy"));
    assert!(healthy.status.success(), "{healthy:?}");

    let mib = "x".repeat(1 << 20);
    // With 2 workers the launcher's pod name is the longest: name + 9.
    let long_name = "a".repeat(54);
    let too_long = "a".repeat(55);
    let many_args: Vec<String> = (0..10_000).map(|i| format!("--x{i}")).collect();
    let cases: Vec<(&str, Value, Want)> = vec![
        (
            "a 1 MiB cmd entry, applied",
            with("big-cmd", "/spec/worker/cmd", json!([mib.clone()])),
            Want::Refused(&["metadata.annotations: Too long: must have at most 262144 bytes"]),
        ),
        (
            "a 1 MiB cmd entry, created",
            with("big-cmd-create", "/spec/worker/cmd", json!([mib])),
            Want::Failed(format!(
                "spec.worker.cmd[0]: is {} bytes, over the kernel's limit for one argument, 131071 (MAX_ARG_STRLEN): pass large input in a file or the environment",
                1 << 20
            )),
        ),
        (
            "10000 extraMPIArgs",
            with("many-args", "/spec/worker/extraMPIArgs", json!(many_args)),
            Want::Served,
        ),
        (
            "a BEL in an MCA key",
            with("mca-bel-key", "/spec/mca", json!({"b\u{7}tl": "tcp"})),
            Want::Failed("spec.mca: key \"b\\u{7}tl\" contains '\\u{7}': MCA parameter names are letters, digits and '_', e.g. btl_tcp_if_include".into()),
        ),
        (
            "a BEL in an MCA value",
            with("mca-bel-value", "/spec/mca", json!({"btl": "tcp\u{7}"})),
            Want::Failed("spec.mca.btl: value must not contain the control character '\\u{7}', got \"tcp\\u{7}\": give printable text, e.g. ^openib".into()),
        ),
        (
            "a newline in an MCA value",
            with("mca-newline", "/spec/mca", json!({"btl": "tcp\n--mca x y"})),
            Want::Failed("spec.mca.btl: value must not contain a line break, got \"tcp\\n--mca x y\": give the value on one line, e.g. ^openib".into()),
        ),
        (
            "a name at the length limit",
            pi_job(&long_name),
            Want::Served,
        ),
        (
            "a name past the length limit",
            pi_job(&too_long),
            Want::Failed(format!(
                "metadata.name: \"{too_long}\" is 55 characters, so pod name \"{too_long}-launcher\" would be 64, over the 63-character DNS label limit: use a name of at most 54 characters"
            )),
        ),
        (
            "a non-ASCII name",
            pi_job("pï"),
            Want::Refused(&["metadata.name", "pï", "RFC 1123"]),
        ),
        (
            "replicas as a string",
            with("t-replicas", "/spec/worker/replicas", json!("two")),
            Want::Refused(&["spec.worker.replicas", "type"]),
        ),
        (
            "cmd as a string",
            with("t-cmd", "/spec/worker/cmd", json!("/opt/pi")),
            Want::Refused(&["spec.worker.cmd", "type"]),
        ),
        (
            "mca as a list",
            with("t-mca", "/spec/mca", json!(["btl=tcp"])),
            Want::Refused(&["spec.mca", "type"]),
        ),
        (
            "extraMPIArgs of numbers",
            with("t-extra", "/spec/worker/extraMPIArgs", json!([1, 2])),
            Want::Refused(&["spec.worker.extraMPIArgs", "type"]),
        ),
        (
            "template as a string",
            with("t-template", "/spec/worker/template", json!("pod")),
            Want::Refused(&["spec.worker.template", "type"]),
        ),
        (
            "ssh as a number",
            with("t-ssh", "/spec/ssh", json!(22)),
            Want::Refused(&["spec.ssh", "type"]),
        ),
        (
            "runMode.debug as a string",
            with("t-debug", "/spec/runMode", json!({"debug": "yes"})),
            Want::Refused(&["spec.runMode.debug", "type"]),
        ),
    ];

    let mut served = Vec::new();
    for (what, doc, want) in &cases {
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let out = apply(&name, doc);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        match want {
            Want::Refused(needles) => {
                assert!(!out.status.success(), "{what}: accepted");
                for n in *needles {
                    assert!(stderr.contains(n), "{what}: {n:?} not in:\n{stderr}");
                }
            }
            Want::Failed(_) | Want::Served => {
                assert!(out.status.success(), "{what}: refused:\n{stderr}");
                if matches!(want, Want::Served) {
                    served.push(name);
                }
            }
        }
    }
    for (what, doc, want) in &cases {
        let name = doc["metadata"]["name"].as_str().unwrap();
        if let Want::Failed(message) = want {
            let status = wait_for(&format!("{what}: {name} Failed"), T, || async {
                let s = e.status(name).await;
                if s.phase == Some(Phase::Failed) {
                    Ok(s)
                } else {
                    Err(format!("{s:?}"))
                }
            })
            .await;
            let failed = status.condition(ConditionType::Failed).unwrap();
            assert_eq!(failed.reason.as_deref(), Some("InvalidSpec"), "{what}");
            assert_eq!(failed.message.as_deref(), Some(message.as_str()), "{what}");
        }
    }
    // The healthy job and the ones with nothing wrong get their pods, and
    // the healthy one runs.
    served.push("healthy".into());
    for name in &served {
        let launcher = format!("{name}-launcher");
        wait_for(&launcher, T, || async {
            let list = e.pods.list(&ListParams::default()).await.unwrap();
            if list.items.iter().any(|p| p.name_any() == launcher) {
                Ok(())
            } else {
                Err("no launcher".to_string())
            }
        })
        .await;
    }
    for p in ["healthy-launcher", "healthy-worker-0", "healthy-worker-1"] {
        e.kubelet.run(p).await;
    }
    e.wait_phase("healthy", Phase::Running).await;
    let _ = std::fs::remove_dir_all(&dir);
}
