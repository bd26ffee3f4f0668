//! The Motadata FaaS operator: one module per controller, each split into the same steps
//! (dereference, validate, build, apply, update_status), the [`kit`] they share, and the
//! process that runs them under leader election.

pub mod agent;
pub mod config;
pub mod faas_service;
pub mod kit;
pub mod leader;
pub mod metrics;
pub mod prompt_template;
pub mod run;
pub mod server;
pub mod telemetry;
