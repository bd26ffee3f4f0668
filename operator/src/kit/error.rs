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
