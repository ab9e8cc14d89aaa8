//! A pod's failure in words, for every API's status.

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

/// `worker pi-worker-2 container mpi-worker exited 137 (OOMKilled)`, with
/// the container's termination message after a colon when it left one.
pub fn describe(who: &str, container: &str, t: &ContainerStateTerminated) -> String {
    let mut m = format!("{who} container {container} exited {}", t.exit_code);
    if let Some(r) = t.reason.as_deref().filter(|r| !r.is_empty()) {
        m.push_str(&format!(" ({r})"));
    }
    if let Some(msg) = t
        .message
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        m.push_str(&format!(": {}", msg.lines().next().unwrap_or_default()));
    }
    m
}

/// A pod that failed without its MPI container saying why (evicted,
/// rejected by the node, an init container failing).
pub fn pod_failure(who: &str, pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    if let Some(init) = status.init_container_statuses.as_ref().and_then(|cs| {
        cs.iter().find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| (c.name.clone(), t))
        })
    }) {
        return Some(format!(
            "{who} init container {} exited {}{}",
            init.0,
            init.1.exit_code,
            init.1
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    let why = [status.reason.as_deref(), status.message.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    Some(if why.is_empty() {
        format!("{who} failed")
    } else {
        format!("{who} failed: {why}")
    })
}
