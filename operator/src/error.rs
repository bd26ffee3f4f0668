//! The operator's one error type.

/// Errors that stop a reconcile; it is retried with backoff.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// An object could not be turned into JSON.
    #[error("cannot serialize an object: {0}")]
    Serialization(#[from] serde_json::Error),

    /// The object lacks a namespace (a cluster-scoped copy of a namespaced kind).
    #[error("{0} has no namespace")]
    MissingNamespace(String),
}

impl Error {
    /// A bounded label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                422 => "invalid",
                429 => "throttled",
                500..=599 => "api_server",
                _ => "api_client",
            },
            Error::Kube(_) => "transport",
            Error::Serialization(_) => "serialization",
            Error::MissingNamespace(_) => "invalid_object",
        }
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
