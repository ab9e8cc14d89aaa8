//! Reading an MPIJob manifest from YAML or JSON text, as local mode and the
//! tests do. Errors come out exactly as the controller would report them:
//! one `field: problem: fix` line each.

use crate::t9k::defaults;
use crate::t9k::v1beta1::MPIJob;
use crate::t9k::validate;
use crate::{FieldError, FieldErrors};

/// The `apiVersion` of the primary API.
pub const API_VERSION: &str = crate::versions::T9K;

/// Parse, validate and normalise a manifest.
pub fn parse(text: &str) -> Result<MPIJob, FieldErrors> {
    let mut job = parse_unvalidated(text).map_err(|e| FieldErrors(vec![e]))?;
    validate::validate_job(&job).map_err(FieldErrors)?;
    defaults::normalize(&mut job.spec);
    Ok(job)
}

/// What a manifest says that the API server would read without a word:
/// a key given twice keeps its last value there. One line each, naming
/// the field and which value wins.
pub fn warnings(text: &str) -> Vec<String> {
    crate::yaml::repeated_keys(text)
        .into_iter()
        .map(|r| {
            let last = r.values.last().cloned().unwrap_or_default();
            let same = r.values.iter().all(|v| *v == last);
            let dropped = if same {
                "the values are the same".to_string()
            } else {
                let earlier: Vec<String> = r.values[..r.values.len() - 1]
                    .iter()
                    .map(|v| v.to_string())
                    .collect();
                format!("dropped: {}", earlier.join(", "))
            };
            format!(
                "{}: given {} times; the last one is used, {last}, as the API server keeps the last ({dropped}): keep one",
                r.path,
                r.values.len()
            )
        })
        .collect()
}

/// Parse a manifest into the typed job without validating it.
pub fn parse_unvalidated(text: &str) -> Result<MPIJob, FieldError> {
    let value = parse_value(text, API_VERSION)?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        FieldError::new(path, e.into_inner().to_string())
    })
}

/// The `apiVersion` of a manifest, read without parsing the rest.
pub fn api_version_of(text: &str) -> Option<String> {
    let value: serde_json::Value = crate::yaml::from_str(text).ok()?;
    value.get("apiVersion")?.as_str().map(str::to_string)
}

/// What to say of a manifest of version `found` given to the reader of
/// `wanted`: an older Kubeflow version needs `convert`; another served
/// version, the other reader; anything else, one of the two.
fn wrong_version(wanted: &str, found: &str) -> String {
    use crate::versions::{KUBEFLOW, KUBEFLOW_GROUP, T9K};
    let served = [T9K, KUBEFLOW];
    if served.contains(&found) {
        format!("must be {wanted} here, got {found:?}")
    } else if found.starts_with(&format!("{KUBEFLOW_GROUP}/")) {
        format!(
            "{found:?} is an older Kubeflow MPIJob version; the served versions are {} and {}: convert it first, `mpijob-controller convert -f FILE` (it writes {})",
            served[0], served[1], served[1]
        )
    } else {
        format!("must be {} or {}, got {found:?}", served[0], served[1])
    }
}

/// Read YAML or JSON text as an MPIJob of `api_version`, untyped.
pub fn parse_value(text: &str, api_version: &str) -> Result<serde_json::Value, FieldError> {
    let value: serde_json::Value = crate::yaml::from_str(text)
        .map_err(|e| FieldError::new("manifest", format!("is not valid YAML: {e}")))?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let found = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    if kind != "MPIJob" {
        return Err(FieldError::new(
            "kind",
            format!("must be MPIJob, got {kind:?}"),
        ));
    }
    if found != api_version {
        return Err(FieldError::new(
            "apiVersion",
            wrong_version(api_version, found),
        ));
    }
    Ok(value)
}
