//! A T9k job, resolved: validated, normalised into the one internal
//! shape, and with its pod templates typed. The controller builds every
//! child from a [`Resolved`] job, so a builder never parses and never
//! fails.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::v1beta1::{CleanUpWorkers, MPIJob, MPIJobSpec};
use super::{defaults, validate};
use crate::FieldError;

/// A valid job's spec, normalised, with what the builders read typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// The spec in its one internal shape ([`defaults::normalize`]).
    pub spec: MPIJobSpec,
    /// The number of worker pods.
    pub workers: u32,
    /// The workers' template; it lists at least one container.
    pub worker: PodTemplateSpec,
    /// The launcher's template: its own (2025 schema), or the workers'.
    pub launcher: PodTemplateSpec,
    /// The image holds the agent
    /// ([`crate::contract::AGENT_IN_IMAGE_ANNOTATION`]).
    pub agent_in_image: bool,
    pub debug: bool,
    pub pause: bool,
    pub clean_up_workers: CleanUpWorkers,
}

/// Validate `job` and resolve it; every problem found otherwise, each
/// naming the field, the value and the fix.
pub fn resolve(job: &MPIJob) -> Result<Resolved, Vec<FieldError>> {
    validate::validate_job(job)?;
    of_valid(job).map_err(|e| vec![e])
}

/// Resolve a job that was valid when it started (its spec recorded on the
/// launcher), without judging it again by today's rules: only what the
/// builders need must hold, a template that parses with a container.
pub fn of_valid(job: &MPIJob) -> Result<Resolved, FieldError> {
    let mut spec = job.spec.clone();
    defaults::normalize(&mut spec);
    // Where each template sits, as a validation error would name it.
    let (worker_at, launcher_at) = (
        "spec.worker.template",
        if spec.launcher_template() == &spec.worker().template {
            "spec.worker.template"
        } else {
            "spec.replicaSpecs[type=launcher].template"
        },
    );
    let worker = spec.worker().template.parse_at(worker_at)?;
    let launcher = spec.launcher_template().parse_at(launcher_at)?;
    for (t, at) in [(&worker, worker_at), (&launcher, launcher_at)] {
        if t.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
            return Err(FieldError::new(
                format!("{at}.spec.containers"),
                "must list at least one container",
            ));
        }
    }
    let agent_in_image = crate::validate::agent_in_image(job.metadata.annotations.as_ref())?;
    Ok(Resolved {
        workers: u32::try_from(spec.worker().replicas.max(0)).unwrap_or(0),
        worker,
        launcher,
        agent_in_image,
        debug: defaults::debug_enabled(&spec),
        pause: defaults::pause_enabled(&spec),
        clean_up_workers: defaults::clean_up_workers(&spec),
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: &str) -> MPIJob {
        crate::yaml::from_str(&format!(
            "apiVersion: batch.tensorstack.dev/v1beta1\nkind: MPIJob\nmetadata: {{name: pi}}\nspec:\n{spec}"
        ))
        .unwrap()
    }

    #[test]
    fn a_2025_job_resolves_to_the_internal_shape_with_typed_templates() {
        let r = resolve(&job(
            "  mpiConfig: {script: [/opt/pi]}\n  runMode: {debug: {enabled: true}}\n  replicaSpecs:\n    - type: launcher\n      template: {spec: {containers: [{name: l, image: launcher:1}]}}\n    - type: worker\n      replicas: 3\n      template: {spec: {containers: [{name: mpi-worker, image: worker:1}]}}\n",
        ))
        .unwrap();
        assert_eq!(r.workers, 3);
        assert_eq!(r.spec.worker().cmd, ["/opt/pi"]);
        assert!(r.spec.replica_specs.iter().all(|s| !s.template.is_empty()));
        let image = |t: &PodTemplateSpec| t.spec.as_ref().unwrap().containers[0].image.clone();
        assert_eq!(image(&r.worker).as_deref(), Some("worker:1"));
        assert_eq!(image(&r.launcher).as_deref(), Some("launcher:1"));
        assert!(r.debug && !r.pause && !r.agent_in_image);
        assert_eq!(r.clean_up_workers, CleanUpWorkers::None);
    }

    #[test]
    fn an_invalid_job_gives_every_problem() {
        let e = resolve(&job(
            "  worker:\n    replicas: 0\n    template: {spec: {containers: []}}\n",
        ))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        assert!(fields.contains(&"spec.worker.replicas"), "{e:?}");
        assert!(
            fields.iter().any(|f| f.starts_with("spec.worker.template")),
            "{e:?}"
        );
    }

    #[test]
    fn a_started_spec_needs_only_a_container() {
        let mut j = job("  worker:\n    replicas: 2\n    cmd: [/opt/pi]\n    template: {spec: {containers: [{name: w, image: i}]}}\n");
        assert!(of_valid(&j).is_ok());
        j.spec.worker_mut().template =
            crate::template::PodTemplate(serde_json::json!({"spec": {"containers": []}}));
        let e = of_valid(&j).unwrap_err();
        assert_eq!(e.path, "spec.worker.template.spec.containers");
    }
}
