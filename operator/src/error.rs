//! The operator's one error type.

use crate::kit::Category;

/// Errors that stop a reconcile; it is retried with backoff.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// The object lacks a namespace (a cluster-scoped copy of a namespaced kind).
    #[error("{0} has no namespace")]
    MissingNamespace(String),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => Category::of(e),
            Error::MissingNamespace(_) => Category::InvalidObject,
        }
        .as_str()
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
