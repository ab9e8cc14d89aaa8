//! The shape a job started with, and what was edited since.
//!
//! The launcher pod carries the spec it was built from
//! ([`contract::STARTED_SPEC_ANNOTATION`]). Once it exists the job keeps
//! that spec: mpirun was given those workers, and validation passed on it.
//! It lives on the pod, not in the status, so that a status someone resets
//! or patches cannot un-freeze a running job. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use mpijob_api::contract;
use mpijob_api::MPIJobSpec;
use serde_json::Value;

/// At most this many edits are listed; the rest are counted.
const MAX_LISTED: usize = 8;
/// Values longer than this are not quoted in an edit, only named.
const MAX_QUOTED: usize = 60;

/// The annotation that records `spec` on the launcher pod.
pub fn annotation(spec: &MPIJobSpec) -> (String, String) {
    let json = serde_json::to_string(spec).expect("a spec serialises to JSON");
    (contract::STARTED_SPEC_ANNOTATION.to_string(), json)
}

/// The spec recorded on the launcher pod: `None` when the pod has no
/// record (it predates this controller), an error when the record is not
/// a spec.
pub fn of_launcher(pod: &Pod) -> Option<Result<MPIJobSpec, String>> {
    let json = pod
        .metadata
        .annotations
        .as_ref()?
        .get(contract::STARTED_SPEC_ANNOTATION)?;
    Some(serde_json::from_str(json).map_err(|e| {
        format!(
            "the launcher's annotation {} is not a spec: {e}",
            contract::STARTED_SPEC_ANNOTATION
        )
    }))
}

/// Every field where `now` differs from `started`, as
/// `spec.worker.replicas changed from 2 to 3`, at most [`MAX_LISTED`].
pub fn edits(started: &MPIJobSpec, now: &MPIJobSpec) -> Vec<String> {
    let (a, b) = (to_value(started), to_value(now));
    let mut out = Vec::new();
    diff("spec", &a, &b, &mut out);
    if out.len() > MAX_LISTED {
        let more = out.len() - MAX_LISTED;
        out.truncate(MAX_LISTED);
        out.push(format!("and {more} more"));
    }
    out
}

fn to_value(spec: &MPIJobSpec) -> Value {
    serde_json::to_value(spec).expect("a spec serialises to JSON")
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeMap<&String, ()> = x.keys().chain(y.keys()).map(|k| (k, ())).collect();
            for k in keys.into_keys() {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                diff(&format!("{path}.{k}"), va, vb, out);
            }
        }
        _ => out.push(match (quote(a), quote(b)) {
            (Some(a), Some(b)) => format!("{path} changed from {a} to {b}"),
            _ => format!("{path} changed"),
        }),
    }
}

/// A short value as it reads in a message: strings bare, absent as
/// `(unset)`, lists and objects in JSON; `None` when too long to quote.
fn quote(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => "(unset)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (s.len() <= MAX_QUOTED && !s.contains('\n')).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::t9k::build::fixtures;

    fn spec(yaml_spec: &str) -> MPIJobSpec {
        fixtures::job(yaml_spec).spec
    }

    const PI: &str = "  mca: {btl: ^openib}\n  worker:\n    replicas: 2\n    cmd: [./pi, '10']\n    template: {spec: {containers: [{name: mpi-worker, image: mpi:1}]}}\n";

    #[test]
    fn an_unchanged_spec_has_no_edits() {
        assert!(edits(&spec(PI), &spec(PI)).is_empty());
    }

    #[test]
    fn every_edited_field_is_named_with_both_values() {
        let edited = PI
            .replace("replicas: 2", "replicas: 3")
            .replace("'10'", "'20'")
            .replace("btl: ^openib", "pml: ob1")
            .replace("mpi:1", "mpi:2");
        assert_eq!(
            edits(&spec(PI), &spec(&edited)),
            [
                "spec.mca.btl changed from ^openib to (unset)",
                "spec.mca.pml changed from (unset) to ob1",
                "spec.worker.cmd changed from [\"./pi\",\"10\"] to [\"./pi\",\"20\"]",
                "spec.worker.replicas changed from 2 to 3",
                "spec.worker.template.spec.containers changed from \
                 [{\"image\":\"mpi:1\",\"name\":\"mpi-worker\"}] to [{\"image\":\"mpi:2\",\"name\":\"mpi-worker\"}]",
            ]
        );
    }

    #[test]
    fn long_values_are_named_not_quoted_and_long_lists_are_cut() {
        let long = format!("  mpiHome: /{}\n{PI}", "x".repeat(100));
        assert_eq!(edits(&spec(PI), &spec(&long)), ["spec.mpiHome changed"]);
        let many: String = (0..12).map(|i| format!("k{i:02}: v, ")).collect();
        let edited = PI.replace("btl: ^openib", &format!("{many}btl: ^openib"));
        let e = edits(&spec(PI), &spec(&edited));
        assert_eq!(e.len(), MAX_LISTED + 1);
        assert_eq!(e[0], "spec.mca.k00 changed from (unset) to v");
        assert_eq!(e[MAX_LISTED], "and 4 more");
    }

    #[test]
    fn the_launcher_annotation_round_trips_the_spec() {
        let s = spec(PI);
        let (k, v) = annotation(&s);
        let mut pod = Pod::default();
        pod.metadata.annotations = Some([(k, v)].into());
        assert_eq!(of_launcher(&pod), Some(Ok(s)));
        assert_eq!(of_launcher(&Pod::default()), None);
        pod.metadata.annotations = Some(
            [(
                contract::STARTED_SPEC_ANNOTATION.to_string(),
                "{".to_string(),
            )]
            .into(),
        );
        let err = of_launcher(&pod).unwrap().unwrap_err();
        assert!(
            err.starts_with(
                "the launcher's annotation batch.tensorstack.dev/started-spec is not a spec"
            ),
            "{err}"
        );
    }
}
