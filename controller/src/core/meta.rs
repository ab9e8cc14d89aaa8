//! The job's identity, read once per reconcile, and the metadata of the
//! children built from it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::error::{Error, Result};

/// What every builder needs to know about the job, read once.
#[derive(Clone, Debug)]
pub struct JobMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub owner: OwnerReference,
    /// The API's job-name label: every child carries it, and the
    /// controller's caches are filtered by it.
    pub label: &'static str,
}

impl JobMeta {
    /// Dereference the job's identity; `label` is its API's job-name label.
    /// Fails only for an object the API server would never hand out (no
    /// name, namespace or uid).
    pub fn of<K: Resource<DynamicType = ()>>(job: &K, label: &'static str) -> Result<JobMeta> {
        let m = job.meta();
        let name = m.name.clone().ok_or(Error::MissingField("metadata.name"))?;
        let namespace = m
            .namespace
            .clone()
            .ok_or(Error::MissingField("metadata.namespace"))?;
        let uid = m.uid.clone().ok_or(Error::MissingField("metadata.uid"))?;
        let owner = job
            .controller_owner_ref(&())
            .ok_or(Error::MissingField("metadata.uid"))?;
        Ok(JobMeta {
            name,
            namespace,
            uid,
            owner,
            label,
        })
    }

    /// Metadata for a child: name, namespace, the job's labels and the
    /// controller owner reference.
    pub fn child(&self, name: String, extra_labels: BTreeMap<String, String>) -> ObjectMeta {
        let mut l = self.selector();
        l.extend(extra_labels);
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(l),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// The label every child of this job carries.
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(self.label.to_string(), self.name.clone())])
    }
}
