//! Converting MPIJob manifests between APIs and API versions: Kubeflow's
//! `v1alpha1`, `v1alpha2` and `v2beta1`, and T9k's `v1beta1` in each of its
//! schema eras. Pure: text in, a manifest and notes out.
//!
//! - Older Kubeflow versions become `kubeflow.org/v2beta1`
//!   ([`kubeflow_old`]), and from there T9k if asked.
//! - T9k and Kubeflow `v2beta1` convert both ways ([`t9k_kubeflow`]).
//!   What both can express round-trips: workers, templates, mpirun's
//!   program, arguments, MCA parameters and installation, slots, the ssh
//!   mount, clean-up and suspension.
//!
//! Every field that cannot be carried over is named in a [`Note`], with
//! the reason; every output passes the target API's validation.

pub mod kubeflow_old;
pub mod mpirun;
pub mod t9k_kubeflow;

use serde_json::Value;

use crate::{FieldError, FieldErrors};

/// The two APIs a manifest can be converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `kubeflow.org/v2beta1`.
    Kubeflow,
    /// `batch.tensorstack.dev/v1beta1`.
    T9k,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Kubeflow, Target::T9k];

    pub fn api_version(self) -> &'static str {
        match self {
            Target::Kubeflow => crate::kubeflow::API_VERSION,
            Target::T9k => crate::manifest::API_VERSION,
        }
    }

    /// The target named by an `apiVersion`.
    pub fn of(api_version: &str) -> Option<Target> {
        Target::ALL
            .into_iter()
            .find(|t| t.api_version() == api_version)
    }
}

/// Something of the input that the output does not carry, or carries
/// differently: the input's field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub field: String,
    pub reason: String,
}

impl Note {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Note {
        Note {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A converted manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    /// The manifest, as JSON.
    pub manifest: Value,
    /// What was not carried over, or was changed on the way.
    pub notes: Vec<Note>,
}

impl Converted {
    /// The manifest as a YAML document.
    pub fn yaml(&self) -> String {
        crate::yaml::to_string(&self.manifest).expect("JSON always serialises as YAML")
    }
}

/// The API version a manifest converts to when none is asked for: the
/// current Kubeflow version for older Kubeflow ones, and the other API
/// for the current ones.
pub fn default_target(api_version: &str) -> Target {
    match Target::of(api_version) {
        Some(Target::Kubeflow) => Target::T9k,
        Some(Target::T9k) => Target::Kubeflow,
        None => Target::Kubeflow,
    }
}

/// Convert the manifest `text` to `to` (or [`default_target`]). The input
/// must be a valid manifest of its own API version; the output is valid
/// for `to`.
pub fn convert(text: &str, to: Option<Target>) -> Result<Converted, FieldErrors> {
    let one = |e: FieldError| FieldErrors(vec![e]);
    let value: Value = crate::yaml::from_str(text).map_err(|e| {
        one(FieldError::new(
            "manifest",
            format!("is not valid YAML: {e}"),
        ))
    })?;
    let version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let to = to.unwrap_or_else(|| default_target(&version));
    let mut notes = Vec::new();
    let manifest = match (Target::of(&version), to) {
        (Some(from), to) if from == to => {
            // Same API: normalised (T9k: into the seed schema), checked.
            match to {
                Target::T9k => t9k_kubeflow::t9k_normalised(text, &mut notes)?,
                Target::Kubeflow => {
                    crate::kubeflow::parse(text)?;
                    value
                }
            }
        }
        (Some(Target::T9k), Target::Kubeflow) => t9k_kubeflow::to_kubeflow(text, &mut notes)?,
        (Some(Target::Kubeflow), Target::T9k) => t9k_kubeflow::to_t9k(text, &mut notes)?,
        (None, to) => {
            let v2 = kubeflow_old::to_v2beta1(&value, &mut notes)?;
            let v2_text = crate::yaml::to_string(&v2).expect("JSON serialises");
            crate::kubeflow::parse(&v2_text)?;
            match to {
                Target::Kubeflow => v2,
                Target::T9k => t9k_kubeflow::to_t9k(&v2_text, &mut notes)?,
            }
        }
        (Some(_), _) => unreachable!("two targets"),
    };
    check(&manifest, to)?;
    Ok(Converted { manifest, notes })
}

/// The output passes its API's validation, or the conversion is a bug
/// that must not reach a user as a manifest.
fn check(manifest: &Value, to: Target) -> Result<(), FieldErrors> {
    let text = crate::yaml::to_string(manifest).expect("JSON serialises");
    let checked = match to {
        Target::Kubeflow => crate::kubeflow::parse(&text).map(|_| ()),
        Target::T9k => crate::manifest::parse(&text).map(|_| ()),
    };
    checked.map_err(|FieldErrors(errors)| {
        FieldErrors(
            errors
                .into_iter()
                .map(|e| FieldError::new(format!("converted {}", e.path), e.message))
                .collect(),
        )
    })
}
