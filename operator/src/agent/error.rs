//! Why an Agent reconcile stopped; it is retried with backoff. References that do not
//! resolve, a definition the agent component would refuse and an unreachable database are
//! not errors: the status reports them.

/// A failed step of the reconcile.
pub use crate::kit::error::PublishError as Error;

/// Result with the Agent controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
