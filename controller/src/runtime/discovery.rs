//! Which MPIJob APIs to serve: those asked for, or those whose CRD is
//! installed.

use kube::Client;

use crate::core::discovery::serves;

/// The MPIJob APIs this controller can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// `batch.tensorstack.dev/v1beta1` (TensorStack T9k).
    T9k,
    /// `kubeflow.org/v2beta1` (Kubeflow mpi-operator).
    Kubeflow,
}

impl Served {
    pub const ALL: [Served; 2] = [Served::T9k, Served::Kubeflow];

    /// The API's `group/version`.
    pub fn api_version(self) -> &'static str {
        match self {
            Served::T9k => mpijob_api::manifest::API_VERSION,
            Served::Kubeflow => mpijob_api::kubeflow::API_VERSION,
        }
    }

    /// The CRD that must be installed, and the file in `crds/` that holds it.
    pub fn crd(self) -> (&'static str, &'static str) {
        match self {
            Served::T9k => ("mpijobs.batch.tensorstack.dev", "crds/mpijob.yaml"),
            Served::Kubeflow => ("mpijobs.kubeflow.org", "crds/kubeflow.org_mpijobs.yaml"),
        }
    }
}

/// Whether the API server serves `mpijobs` in `api_version` (its CRD is
/// installed and established). Discovery needs no RBAC beyond what every
/// client has.
async fn installed(client: &Client, api: Served) -> anyhow::Result<bool> {
    serves(client, api.api_version(), "mpijobs")
        .await
        .map_err(|e| anyhow::anyhow!("discovering {}: {e}", api.api_version()))
}

/// The APIs to serve: those asked for (each must be installed), or, when
/// none are, each one whose CRD is installed. The log says which and why.
pub async fn choose_apis(client: &Client, asked: Option<&[Served]>) -> anyhow::Result<Vec<Served>> {
    let mut serve = Vec::new();
    for api in Served::ALL {
        let wanted = asked.is_none_or(|a| a.contains(&api));
        let (crd, file) = api.crd();
        let present = installed(client, api).await?;
        match (wanted, present, asked.is_some()) {
            (true, true, explicit) => {
                let why = if explicit { "asked for with --apis" } else { "its CRD is installed" };
                tracing::info!(api = api.api_version(), "serving {} MPIJobs: {why}", api.api_version());
                serve.push(api);
            }
            (true, false, true) => anyhow::bail!(
                "--apis asks for {} but CRD {crd} is not installed: kubectl apply -f {file}, or leave that API out of --apis",
                api.api_version()
            ),
            (true, false, false) => tracing::info!(
                api = api.api_version(),
                "not serving {} MPIJobs: CRD {crd} is not installed (kubectl apply -f {file}, then restart the controller)",
                api.api_version()
            ),
            (false, _, _) => tracing::info!(
                api = api.api_version(),
                "not serving {} MPIJobs: left out of --apis",
                api.api_version()
            ),
        }
    }
    if serve.is_empty() {
        anyhow::bail!(
            "no MPIJob CRD is installed: kubectl apply -f crds/ (or one of crds/mpijob.yaml and crds/kubeflow.org_mpijobs.yaml)"
        );
    }
    Ok(serve)
}
