//! Contracts that the operator and the runtime of Motadata FaaS share.
//!
//! Nothing here talks to Kubernetes or does IO: the crate holds the component list and
//! the backends each component needs, and the payloads that cross components.

pub mod component;
pub mod events;
pub mod integer;

pub use component::{Backend, Component};
