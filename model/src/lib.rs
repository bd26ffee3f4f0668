//! Contracts that the operator and the runtime of Motadata FaaS share.
//!
//! Nothing here talks to Kubernetes or does IO: the crate holds the component list and
//! the backends each component needs, the content of prompt templates with its checks and
//! hash, the agent definition, the rules of rag collection names, the payloads that cross components, and the serde helpers
//! their fields use.

pub mod agent;
pub mod component;
pub mod events;
pub mod integer;
pub mod prompt;
pub mod rag;

pub use component::{Backend, Component};
