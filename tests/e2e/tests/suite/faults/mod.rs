//! The operator under faults of the control plane and of its own replicas. Each test breaks
//! the cluster for every other test running beside it: tests/e2e/run.sh runs these one at a
//! time, after the rest of the suite (see faas_e2e::faults).

mod apiserver;
mod children;
mod etcd;
mod leader;
