//! Why a PromptTemplate reconcile stopped; it is retried with backoff. Content the user has
//! to fix and an unreachable database are not errors: the status reports them (see
//! [`super::validate::Invalid`] and [`crate::kit::database::Problem`]).

/// A failed step of the reconcile.
pub use crate::kit::error::PublishError as Error;

/// Result with the PromptTemplate controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
