//! Validation. Pure: every error names the field, the bad value and the fix,
//! as one line, e.g. `spec.worker.replicas: must be at least 1, got 0`.
//!
//! The same checks run in the controller (a bad job gets a `Failed` phase
//! with the message) and in the agent (local mode, and the launcher's own
//! flags), so a job is judged the same way everywhere.

use crate::contract;
use crate::template::PodTemplate;
use crate::FieldError;

/// The longest name Kubernetes accepts for a pod's hostname or a Service.
pub const DNS_LABEL_MAX: usize = 63;

/// The most workers one job may have. Far above any real MPI job on
/// Kubernetes; it keeps one mistyped job from swamping the controller and
/// the API server (a status with every replica must fit in etcd).
pub const MAX_REPLICAS: i32 = 10_000;

/// Whether the job's image holds the agent
/// ([`contract::AGENT_IN_IMAGE_ANNOTATION`]): `Ok(false)` without the
/// annotation, `Ok(true)` when it names this release's agent, an error
/// that says what to do otherwise. Both APIs read it.
pub fn agent_in_image(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<bool, FieldError> {
    let Some(value) = annotations.and_then(|a| a.get(contract::AGENT_IN_IMAGE_ANNOTATION)) else {
        return Ok(false);
    };
    if value == contract::VERSION {
        return Ok(true);
    }
    let v = contract::VERSION;
    Err(FieldError::new(
        format!(
            "metadata.annotations[{:?}]",
            contract::AGENT_IN_IMAGE_ANNOTATION
        ),
        format!(
            "{value:?} is not the agent version this controller runs, {v}: put agent {v} into the image (COPY --from=mpijob/agent:{v} /mpijob-agent {}) and set {v:?}, or remove the annotation to have the agent copied into the pods",
            contract::agent_path()
        ),
    ))
}

/// The job name must be a DNS-1035 label (it names the headless Service),
/// and short enough that every pod name derived from it is one too.
pub fn job_name(name: &str, replicas: i32) -> Result<(), FieldError> {
    if !is_dns_1035_label(name) {
        return Err(FieldError::new(
            "metadata.name",
            format!(
                "{name:?} is not a DNS label: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, e.g. pi-job"
            ),
        ));
    }
    let last_index = replicas.max(1) as u32 - 1;
    let longest = [
        contract::worker_name(name, last_index),
        contract::launcher_name(name),
    ]
    .into_iter()
    .max_by_key(String::len)
    .expect("two candidates");
    if longest.len() > DNS_LABEL_MAX {
        let allowed = name.len() - (longest.len() - DNS_LABEL_MAX);
        return Err(FieldError::new(
            "metadata.name",
            format!(
                "{name:?} is {} characters, so pod name {longest:?} would be {}, over the {DNS_LABEL_MAX}-character DNS label limit: use a name of at most {allowed} characters",
                name.len(),
                longest.len()
            ),
        ));
    }
    Ok(())
}

/// An MCA parameter name. It becomes one argv entry after `--mca`, and a
/// `OMPI_MCA_<key>` environment name, so it must be a plain token.
pub fn mca_key(key: &str) -> Result<(), FieldError> {
    let fail = |why: &str| Err(FieldError::new("spec.mca", format!("key {key:?} {why}")));
    if key.is_empty() {
        return fail("must not be empty: name an MCA parameter, e.g. btl");
    }
    if key.contains(['\n', '\r']) {
        return fail("must not contain a line break: give one MCA parameter name per key, e.g. btl_tcp_if_include");
    }
    if key.chars().any(char::is_whitespace) {
        return fail("must not contain white space: give one MCA parameter name per key, e.g. btl_tcp_if_include");
    }
    if key.contains('=') {
        return fail("must not contain '=': put the value on the right, e.g. btl: ^openib");
    }
    if key.starts_with('-') {
        return fail("must not start with '-': give the parameter name without dashes, e.g. pml");
    }
    if key.contains('\0') {
        return fail("must not contain a NUL byte");
    }
    // Open MPI's parameter names are framework_component_name words.
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return fail(&format!(
            "contains {c:?}: MCA parameter names are letters, digits and '_', e.g. btl_tcp_if_include"
        ));
    }
    Ok(())
}

/// An MCA parameter value. It becomes one argv entry and an environment
/// value, so it must stay on one line.
pub fn mca_value(key: &str, value: &str) -> Result<(), FieldError> {
    let path = format!("spec.mca.{key}");
    if value.contains(['\n', '\r']) {
        return Err(FieldError::new(
            path,
            format!("value must not contain a line break, got {value:?}: give the value on one line, e.g. ^openib"),
        ));
    }
    if value.contains('\0') {
        return Err(FieldError::new(
            path,
            format!("value must not contain a NUL byte, got {value:?}"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(FieldError::new(
            path,
            format!("value must not contain the control character {c:?}, got {value:?}: give printable text, e.g. ^openib"),
        ));
    }
    Ok(())
}

/// Whether `s` is a DNS-1035 label: what Services, and so our job names,
/// must be.
pub fn is_dns_1035_label(s: &str) -> bool {
    is_dns_1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Whether `s` is a DNS-1123 label: what namespaces must be. Unlike a
/// DNS-1035 label it may start with a digit.
pub fn is_dns_1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS_LABEL_MAX
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(crate) fn absolute_path(field: &str, value: &str, example: &str, e: &mut Vec<FieldError>) {
    if !value.starts_with('/') {
        e.push(FieldError::new(
            field,
            format!(
                "must be an absolute path, got {value:?}: write it from the root, e.g. {example}"
            ),
        ));
    } else if value.contains(['\n', '\r', '\0']) {
        e.push(FieldError::new(
            field,
            format!("must be a single-line path, got {value:?}"),
        ));
    }
}

/// A pod template that parses and lists at least one container.
pub(crate) fn template_with_containers(at: &str, template: &PodTemplate, e: &mut Vec<FieldError>) {
    match template.parse_at(at) {
        Ok(t) => {
            if t.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
                e.push(FieldError::new(
                    format!("{at}.spec.containers"),
                    "must list at least one container: add the MPI container, named mpi-worker, with an image that has MPI and openssh-server",
                ));
            }
        }
        Err(err) => e.push(err),
    }
}

/// Entries that become argv: anything goes but NUL, which argv cannot hold.
/// The longest single argument Linux passes to a program: MAX_ARG_STRLEN
/// (32 pages of 4 KiB) less its terminating NUL. `execve` fails with E2BIG
/// on a longer one.
pub const MAX_ARGUMENT_BYTES: usize = 32 * 4096 - 1;

pub(crate) fn argv_entries(field: &str, entries: &[String], e: &mut Vec<FieldError>) {
    for (i, entry) in entries.iter().enumerate() {
        if entry.contains('\0') {
            // A megabyte of it is not worth echoing.
            let shown: String = entry.chars().take(80).collect();
            e.push(FieldError::new(
                format!("{field}[{i}]"),
                format!("must not contain a NUL byte, got {shown:?}"),
            ));
        }
        if entry.len() > MAX_ARGUMENT_BYTES {
            e.push(FieldError::new(
                format!("{field}[{i}]"),
                format!(
                    "is {} bytes, over the kernel's limit for one argument, {MAX_ARGUMENT_BYTES} (MAX_ARG_STRLEN): pass large input in a file or the environment",
                    entry.len()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["pi", "pi-job", "a1", "x"] {
            assert!(is_dns_1035_label(ok) && is_dns_1123_label(ok), "{ok}");
        }
        // Namespaces may start with a digit; job names may not.
        for digit_first in ["1ns", "0"] {
            assert!(is_dns_1123_label(digit_first), "{digit_first}");
            assert!(!is_dns_1035_label(digit_first), "{digit_first}");
        }
        let long = "a".repeat(DNS_LABEL_MAX + 1);
        for bad in ["", "Pi", "-pi", "pi-", "pi.job", "pi_job", long.as_str()] {
            assert!(!is_dns_1035_label(bad) && !is_dns_1123_label(bad), "{bad}");
        }
    }
}
