//! Custom resource types of Motadata FaaS, API group `faas.motadata.io`, version `v1alpha1`.
//!
//! These types are the single source of truth for the CRD schemas: the `crdgen` binary renders
//! them to YAML, and a test fails when the committed YAML drifts from what the types generate.

pub mod agent;
pub mod common;
pub mod faas_service;
pub mod generate;
pub mod offline;
pub mod prompt_template;

pub use agent::{Agent, AgentSpec, AgentStatus};
pub use common::{SecretKey, SecretKeyRef, conditions};
pub use faas_service::{Component, FaasService, FaasServiceSpec, FaasServiceStatus};
pub use prompt_template::{PromptTemplate, PromptTemplateSpec, PromptTemplateStatus};

/// API group of every Motadata FaaS resource.
pub const GROUP: &str = "faas.motadata.io";
/// API version served and stored by this release.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of every Motadata FaaS resource.
pub const API_VERSION: &str = "faas.motadata.io/v1alpha1";
