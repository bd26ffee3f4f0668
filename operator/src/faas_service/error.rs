//! Why a FaasService reconcile stopped; it is retried with backoff. A spec the user has to fix
//! is not an error: it is reported in the status (see [`super::validate::Invalid`]).

use crate::kit::Category;

/// A failed step of the reconcile.
#[derive(thiserror::Error, Debug, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Error {
    /// The object lacks a namespace (a cluster-scoped copy of a namespaced kind).
    #[error("{0} has no namespace")]
    MissingNamespace(String),

    /// The Secrets or FaasServices the spec references, or the Agents an agent service
    /// serves, could not be read.
    #[error("cannot read the objects the spec references: {0}")]
    Dereference(#[source] kube::Error),

    /// A child's name is taken by an object this FaasService does not control. The reconcile
    /// reports it in the status (reason `ChildConflict`) instead of failing.
    #[error("{0}")]
    ChildConflict(crate::kit::Conflict),

    /// A child could not be applied.
    #[error("cannot apply the {kind}: {source}")]
    Apply { kind: String, source: kube::Error },

    /// A child no longer wanted could not be deleted.
    #[error("cannot delete the {kind} no longer wanted: {source}")]
    Prune { kind: String, source: kube::Error },

    /// The Deployment or its pods could not be read.
    #[error("cannot read the state of the Deployment and its pods: {0}")]
    Observe(#[source] kube::Error),

    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    UpdateStatus(#[source] kube::Error),
}

impl Error {
    /// A bounded label for metrics and logs: what kind of failure, whichever step it stopped.
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingNamespace(_) => Category::InvalidObject,
            Error::ChildConflict(_) => Category::Conflict,
            Error::Dereference(e)
            | Error::Apply { source: e, .. }
            | Error::Prune { source: e, .. }
            | Error::Observe(e)
            | Error::UpdateStatus(e) => Category::of(e),
        }
        .as_str()
    }

    /// The step that failed, for logs.
    pub fn step(&self) -> &'static str {
        self.into()
    }
}

/// Result with the FaasService controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
