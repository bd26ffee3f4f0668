//! End-to-end suite of the operator against a real API server. Needs FAAS_E2E_KUBECONFIG
//! (see tests/e2e/run.sh); every test runs in a namespace of its own.

mod admission;
mod agent_secrets;
mod common;
mod faults;
mod leader;
mod lifecycle;
mod offline;
mod pod_boots;
mod publish;
mod rbac;
mod steady;
