//! API discovery: whether a CRD's resource is served.

use kube::Client;

/// Whether the API server serves `plural` in `api_version` (its CRD is
/// installed and established): MPIJobs for the runtime, PodGroups for
/// `gang`. Discovery needs no RBAC beyond what every client has.
pub async fn serves(client: &Client, api_version: &str, plural: &str) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        // A group the server does not serve is a plain-text "404 page not
        // found", not a NotFound Status: any 404 means not installed.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}
