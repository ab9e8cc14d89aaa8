//! Build: every child object as a pure function of the job. No client here,
//! so each builder is unit-tested as plain data.

pub mod mode;
pub mod pod;
pub mod secret;
pub mod service;

use std::collections::BTreeMap;

use mpijob_api::contract::labels;
use mpijob_api::t9k::v1beta1::ReplicaType;

/// The two roles a pod can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Launcher,
    Worker(u32),
}

impl Role {
    /// The replica type: the value of the role label and of the status's
    /// tasks.
    pub fn replica_type(self) -> ReplicaType {
        match self {
            Role::Launcher => ReplicaType::Launcher,
            Role::Worker(_) => ReplicaType::Worker,
        }
    }

    pub fn index(self) -> u32 {
        match self {
            Role::Launcher => 0,
            Role::Worker(i) => i,
        }
    }

    /// The pod's name.
    pub fn pod_name(self, job: &str) -> String {
        match self {
            Role::Launcher => mpijob_api::contract::launcher_name(job),
            Role::Worker(i) => mpijob_api::contract::worker_name(job, i),
        }
    }

    /// Read a pod's role back from its labels.
    pub fn of_labels(l: &BTreeMap<String, String>) -> Option<Role> {
        match ReplicaType::from(l.get(labels::ROLE)?.clone()) {
            ReplicaType::Launcher => Some(Role::Launcher),
            ReplicaType::Worker => l.get(labels::INDEX)?.parse().ok().map(Role::Worker),
            ReplicaType::Invalid(_) => None,
        }
    }
}

/// Every pod a job with this many workers has: the launcher first.
pub fn roles(workers: u32) -> Vec<Role> {
    std::iter::once(Role::Launcher)
        .chain((0..workers).map(Role::Worker))
        .collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    use mpijob_api::MPIJob;

    /// A valid job as the API server would hand it out.
    pub fn job(yaml_spec: &str) -> MPIJob {
        let mut job: MPIJob = mpijob_api::yaml::from_str(&format!(
            "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata: {{name: pi, namespace: team, uid: 1234-abcd}}\nspec:\n{yaml_spec}"
        ))
        .unwrap();
        mpijob_api::t9k::defaults::normalize(&mut job.spec);
        job
    }

    /// `job`, resolved as the reconcile resolves it.
    pub fn resolved(job: &MPIJob) -> mpijob_api::t9k::Resolved {
        mpijob_api::t9k::resolve::of_valid(job).unwrap()
    }

    pub const PI: &str = "  worker:\n    replicas: 2\n    cmd: [/opt/pi, '100']\n    template:\n      metadata: {labels: {team: a}}\n      spec:\n        containers:\n          - {name: sidecar, image: busybox}\n          - {name: mpi-worker, image: mpi:1, command: [ignored]}\n";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::meta::JobMeta;

    #[test]
    fn roles_and_names() {
        assert_eq!(
            roles(2),
            vec![Role::Launcher, Role::Worker(0), Role::Worker(1)]
        );
        assert_eq!(Role::Worker(3).pod_name("pi"), "pi-worker-3");
        assert_eq!(Role::Launcher.pod_name("pi"), "pi-launcher");
        let l = BTreeMap::from([
            (labels::ROLE.to_string(), "worker".to_string()),
            (labels::INDEX.to_string(), "7".to_string()),
        ]);
        assert_eq!(Role::of_labels(&l), Some(Role::Worker(7)));
    }

    #[test]
    fn children_are_owned_by_the_job_as_controller() {
        let job = fixtures::job(fixtures::PI);
        let meta = JobMeta::of(&job, labels::JOB_NAME).unwrap();
        let child = meta.child("x".into(), BTreeMap::new());
        let owner = &child.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "MPIJob");
        assert_eq!(owner.api_version, "batch.tensorstack.dev/v1beta1");
        assert_eq!(owner.uid, "1234-abcd");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(child.labels.unwrap()[labels::JOB_NAME], "pi");
    }
}
