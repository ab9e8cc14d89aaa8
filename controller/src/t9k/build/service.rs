//! `<job>`: the headless Service that gives each pod a DNS name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use mpijob_api::contract::{service_name, DEFAULT_SSH_PORT};

use crate::core::meta::JobMeta;

/// Headless, selecting every pod of the job, and publishing addresses before
/// the pods are ready: the launcher waits for DNS and ssh itself, so it must
/// not depend on readiness.
pub fn service(meta: &JobMeta) -> Service {
    Service {
        metadata: meta.child(service_name(&meta.name), BTreeMap::new()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(meta.selector()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("ssh".to_string()),
                port: i32::from(DEFAULT_SSH_PORT),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::t9k::build::fixtures;

    #[test]
    fn the_service_is_headless_and_publishes_unready_pods() {
        let meta = JobMeta::of(
            &fixtures::job(fixtures::PI),
            mpijob_api::contract::labels::JOB_NAME,
        )
        .unwrap();
        let s = service(&meta);
        assert_eq!(s.metadata.name.as_deref(), Some("pi"));
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            spec.selector.unwrap(),
            BTreeMap::from([(
                "batch.tensorstack.dev/mpi-job-name".to_string(),
                "pi".to_string()
            )])
        );
    }
}
