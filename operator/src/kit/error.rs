//! Bounded categories of failed Kubernetes API requests: metric labels must not grow with the
//! objects or messages involved.

/// What kind of failure stopped a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Category {
    /// 403: the operator lacks a permission.
    Forbidden,
    /// 404.
    NotFound,
    /// 409: another writer got there first.
    Conflict,
    /// 422: the API server rejected an object.
    Invalid,
    /// 429.
    Throttled,
    /// 5xx.
    ApiServer,
    /// Any other status the API server answered with.
    ApiClient,
    /// No answer: connection, TLS, timeouts, undecodable responses.
    Transport,
    /// The reconciled object itself is unusable (for example, it has no namespace).
    InvalidObject,
    /// The platform's Postgres failed or could not be reached.
    Database,
}

impl Category {
    /// The category of a failed API request.
    pub fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => match status.code {
                403 => Self::Forbidden,
                404 => Self::NotFound,
                409 => Self::Conflict,
                422 => Self::Invalid,
                429 => Self::Throttled,
                500..=599 => Self::ApiServer,
                _ => Self::ApiClient,
            },
            _ => Self::Transport,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Why the reconcile of a resource the operator publishes as a database row stopped (the
/// Agent and PromptTemplate controllers): it is retried with backoff. Content the user has to
/// fix and an unreachable database are not errors of this kind: the status reports them.
#[derive(thiserror::Error, Debug, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PublishError {
    /// The object lacks a namespace (a cluster-scoped copy of a namespaced kind).
    #[error("{0} has no namespace")]
    MissingNamespace(String),

    /// The objects the spec references, or that reference the object, could not be read.
    #[error("cannot read the objects the spec references or that reference it: {0}")]
    Dereference(#[source] kube::Error),

    /// The finalizer could not be added or removed.
    #[error("cannot change the finalizer: {0}")]
    Finalizer(#[source] kube::Error),

    /// The status could not be written.
    #[error("cannot write the status: {0}")]
    UpdateStatus(#[source] kube::Error),
}

impl PublishError {
    /// A bounded label for metrics and logs: what kind of failure, whichever step it stopped.
    pub fn category(&self) -> &'static str {
        match self {
            Self::MissingNamespace(_) => Category::InvalidObject,
            Self::Dereference(e) | Self::Finalizer(e) | Self::UpdateStatus(e) => Category::of(e),
        }
        .as_str()
    }

    /// The step that failed, for logs.
    pub fn step(&self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn labels_are_snake_case_and_distinct() {
        let labels: Vec<&str> = Category::VARIANTS.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels[0], "forbidden");
        assert!(labels.contains(&"api_server"));
        assert!(labels.contains(&"invalid_object"));
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
    }
}
