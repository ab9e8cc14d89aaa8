//! A pod template kept as the JSON the API server stored, shared by both
//! APIs.
//!
//! Neither CRD spells out the full PodTemplateSpec schema (see
//! [`crate::schema`]), so the server accepts anything beneath it. Keeping it
//! raw means a malformed template fails validation of its own job, naming
//! the field, instead of failing deserialisation of every job in a list.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{schema, FieldError};

/// A core/v1 PodTemplateSpec as raw JSON; [`PodTemplate::parse_at`] types it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct PodTemplate(pub serde_json::Value);

impl PodTemplate {
    /// True when nothing was given.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            serde_json::Value::Null => true,
            serde_json::Value::Object(map) => map.is_empty(),
            _ => false,
        }
    }

    /// The typed template of the T9k API's `spec.worker.template`.
    pub fn parse(&self) -> Result<PodTemplateSpec, FieldError> {
        self.parse_at("spec.worker.template")
    }

    /// The typed template. The error names the offending field, under
    /// `path` (where the template sits in its job).
    pub fn parse_at(&self, path: &str) -> Result<PodTemplateSpec, FieldError> {
        if self.0.is_null() {
            return Ok(PodTemplateSpec::default());
        }
        serde_path_to_error::deserialize(&self.0).map_err(|e| {
            let inner = e.path().to_string();
            let at = if inner == "." {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            FieldError::new(at, e.into_inner().to_string())
        })
    }
}

impl From<PodTemplateSpec> for PodTemplate {
    fn from(t: PodTemplateSpec) -> Self {
        PodTemplate(serde_json::to_value(t).expect("a PodTemplateSpec always serialises"))
    }
}

impl JsonSchema for PodTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PodTemplate".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schema::pod_template()
    }
}
