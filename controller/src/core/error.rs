use thiserror::Error;

/// What can go wrong in one reconcile. A bad job never produces one of
/// these: invalid specs become a `Failed` status, not an error.
#[derive(Debug, Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("the object has no {0}")]
    MissingField(&'static str),

    #[error("the watch caches were dropped")]
    CachesClosed,

    /// The launcher's record of the spec the job started with is not
    /// readable: someone edited the annotation.
    #[error("{0}")]
    StartedSpec(String),

    /// The first list of a PodGroup kind did not finish: RBAC, or an API
    /// server in trouble.
    #[error(
        "could not list {0} within 60 s: check that the controller's role may list and watch them"
    )]
    PodGroupsNotSynced(String),
}

impl Error {
    /// A short, stable label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingField(_) => "missing_field",
            Error::CachesClosed => "caches_closed",
            Error::StartedSpec(_) => "started_spec",
            Error::PodGroupsNotSynced(_) => "podgroups_not_synced",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
