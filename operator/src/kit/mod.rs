//! What every controller shares. Nothing here names a custom resource: each piece is generic
//! over the objects it works on, so a controller only says what it wants and this module
//! decides how it gets there with the fewest writes.
//!
//! - [`apply`]: server-side apply of children, skipped when the live object already matches,
//!   refused when an object of that name belongs to someone else
//! - [`prune`](mod@prune): deletion of children no longer wanted, only those the owner controls
//! - [`diff`]: whether a live object holds every field of the desired one
//! - [`status`]: status written by server-side apply, only when it says something new
//! - [`events`]: Kubernetes Events when conditions change
//! - [`backoff`]: exponential backoff of failed reconciles, per object
//! - [`finalizer`]: a finalizer for cleanup outside the cluster, added and removed safely
//! - [`database`]: the Postgres pool, tenant-scoped transactions, failures as conditions
//! - [`tenant`]: which tenant ids rows may be written under
//! - [`text`]: text cut to the size a condition or an Event can hold
//! - [`error`]: bounded categories of Kubernetes API failures, for metrics and logs
//! - [`watch`]: the scoped APIs and result logging of a kube-runtime controller

pub mod apply;
pub mod backoff;
pub mod database;
pub mod diff;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod prune;
pub mod status;
pub mod tenant;
pub mod text;
pub mod watch;

pub use apply::{
    APPLIED_HASH_ANNOTATION, Child, Conflict, EnsureError, MANAGER, ensure, hash_json,
    owner_reference, stamp,
};
pub use backoff::Backoff;
pub use error::Category;
pub use prune::{owned_by, prune};
