//! The Motadata FaaS operator: controllers, pure builders, status computation and the process
//! that runs them under leader election.

pub mod config;
pub mod faas_service;
pub mod kit;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod server;
pub mod telemetry;
