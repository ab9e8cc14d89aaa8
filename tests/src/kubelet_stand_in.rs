//! A **kubelet stand-in**: the harness has no kubelet, so tests move pods
//! through their phases and set container states and exit codes the way a
//! kubelet would, through the pods' status subresource.
//!
//! This is test scaffolding only. It exists so that controller tests can see
//! a pod run, succeed or fail without a node.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// How a container ended.
#[derive(Clone, Debug)]
pub struct Termination {
    pub exit_code: i32,
    pub reason: String,
    pub message: Option<String>,
}

impl Termination {
    pub fn new(exit_code: i32, reason: &str) -> Termination {
        Termination {
            exit_code,
            reason: reason.to_string(),
            message: None,
        }
    }

    pub fn with_message(mut self, message: &str) -> Termination {
        self.message = Some(message.to_string());
        self
    }
}

/// Moves the pods of one namespace.
pub struct KubeletStandIn {
    pods: Api<Pod>,
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl KubeletStandIn {
    pub fn new(client: &Client, namespace: &str) -> KubeletStandIn {
        KubeletStandIn {
            pods: Api::namespaced(client.clone(), namespace),
        }
    }

    async fn container_names(&self, pod: &str) -> Vec<String> {
        let p = self.pods.get(pod).await.unwrap();
        p.spec
            .map(|s| s.containers.into_iter().map(|c| c.name).collect())
            .unwrap_or_default()
    }

    async fn patch_status(&self, pod: &str, status: Value) {
        self.pods
            .patch_status(
                pod,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "status": status })),
            )
            .await
            .unwrap_or_else(|e| panic!("kubelet stand-in: patching {pod}: {e}"));
    }

    /// Every container running and ready: phase Running, condition Ready.
    pub async fn run(&self, pod: &str) {
        let names = self.container_names(pod).await;
        self.run_containers(pod, &names).await;
    }

    /// [`KubeletStandIn::run`] for a pod whose containers are known: one
    /// request instead of two.
    pub async fn run_containers(&self, pod: &str, names: &[String]) {
        let statuses: Vec<Value> = names
            .iter()
            .map(|name| {
                json!({
                    "name": name, "ready": true, "restartCount": 0,
                    "image": "stand-in", "imageID": "", "started": true,
                    "state": {"running": {"startedAt": now()}}
                })
            })
            .collect();
        self.patch_status(
            pod,
            json!({
                "phase": "Running",
                "startTime": now(),
                "containerStatuses": statuses,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now()},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now()},
                ],
            }),
        )
        .await;
    }

    /// Every container (`names`) exited 0: phase Succeeded, in one request.
    pub async fn succeed_containers(&self, pod: &str, names: &[String]) {
        let statuses: Vec<Value> = names
            .iter()
            .map(|name| {
                json!({
                    "name": name, "ready": false, "restartCount": 0,
                    "image": "stand-in", "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now(), "finishedAt": now()}}
                })
            })
            .collect();
        self.patch_status(
            pod,
            json!({"phase": "Succeeded", "containerStatuses": statuses}),
        )
        .await;
    }

    /// One container terminated, the others still running. The pod's phase
    /// is Succeeded or Failed once every container has ended, as a kubelet
    /// with `restartPolicy: Never` reports it; `pod_phase` overrides that.
    pub async fn terminate(&self, pod: &str, container: &str, end: &Termination) {
        self.terminate_all(pod, &[(container, end.clone())]).await;
    }

    /// Several containers terminated at once.
    pub async fn terminate_all(&self, pod: &str, ends: &[(&str, Termination)]) {
        let current = self.pods.get(pod).await.unwrap();
        let mut statuses: Vec<Value> = current
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        let names = self.container_names(pod).await;
        if statuses.is_empty() {
            statuses = names
                .iter()
                .map(|n| json!({"name": n, "ready": false, "restartCount": 0, "image": "stand-in", "imageID": "", "state": {"running": {"startedAt": now()}}}))
                .collect();
        }
        for (container, end) in ends {
            let s = statuses
                .iter_mut()
                .find(|s| s["name"] == *container)
                .unwrap_or_else(|| panic!("pod {pod} has no container {container}"));
            let mut terminated = json!({
                "exitCode": end.exit_code, "reason": end.reason,
                "startedAt": now(), "finishedAt": now(),
            });
            if let Some(m) = &end.message {
                terminated["message"] = json!(m);
            }
            s["state"] = json!({ "terminated": terminated });
            s["ready"] = json!(false);
        }
        let all_ended = statuses
            .iter()
            .all(|s| s["state"].get("terminated").is_some());
        let all_zero = statuses
            .iter()
            .all(|s| s["state"]["terminated"]["exitCode"] == json!(0));
        let mut status = json!({ "containerStatuses": statuses });
        if all_ended {
            status["phase"] = json!(if all_zero { "Succeeded" } else { "Failed" });
        }
        self.patch_status(pod, status).await;
    }

    /// What a scheduler writes: PodScheduled True (placed), or False with
    /// its reason for not placing the pod.
    pub async fn scheduled(&self, pod: &str, placed: bool, message: &str) {
        let status = if placed { "True" } else { "False" };
        let reason = if placed { "Scheduled" } else { "Unschedulable" };
        self.patch_status(
            pod,
            json!({"conditions": [{"type": "PodScheduled", "status": status, "reason": reason, "message": message, "lastTransitionTime": now()}]}),
        )
        .await;
    }

    /// Set the pod's phase only, e.g. Pending or Unknown.
    pub async fn set_phase(&self, pod: &str, phase: &str) {
        self.patch_status(pod, json!({ "phase": phase })).await;
    }
}
