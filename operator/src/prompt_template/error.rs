//! Why a PromptTemplate reconcile stopped; it is retried with backoff. Content the user has
//! to fix and an unreachable database are not errors: the status reports them (see
//! [`super::validate::Invalid`] and [`crate::kit::database::Problem`]).

use crate::kit::Category;

/// A failed step of the reconcile.
#[derive(thiserror::Error, Debug, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Error {
    /// The object lacks a namespace (a cluster-scoped copy of a namespaced kind).
    #[error("{0} has no namespace")]
    MissingNamespace(String),

    /// The Agents that may reference the template could not be listed.
    #[error("cannot list the Agents that may reference the template: {0}")]
    Dereference(#[source] kube::Error),

    /// The finalizer could not be added or removed.
    #[error("cannot change the finalizer: {0}")]
    Finalizer(#[source] kube::Error),

    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    UpdateStatus(#[source] kube::Error),
}

impl Error {
    /// A bounded label for metrics and logs: what kind of failure, whichever step it stopped.
    pub fn category(&self) -> &'static str {
        match self {
            Error::MissingNamespace(_) => Category::InvalidObject,
            Error::Dereference(e) | Error::Finalizer(e) | Error::UpdateStatus(e) => Category::of(e),
        }
        .as_str()
    }

    /// The step that failed, for logs.
    pub fn step(&self) -> &'static str {
        self.into()
    }
}

/// Result with the PromptTemplate controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
