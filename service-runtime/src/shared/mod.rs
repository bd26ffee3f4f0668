//! The layer between the platform and the components: what several components use.
//! It may import the platform and the model, never a component.

pub mod agents;
pub mod documents;
pub mod embed;
pub mod gateway_client;
pub mod pricing;
