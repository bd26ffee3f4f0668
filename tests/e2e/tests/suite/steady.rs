//! In steady state the operator writes nothing.

use std::time::Duration;

use faas_e2e::TestNs;
use kube::ResourceExt;

use crate::common::*;

/// How long to watch for writes; FAAS_E2E_STEADY_SECONDS overrides the default of 60.
fn window() -> Duration {
    let secs = std::env::var("FAAS_E2E_STEADY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

#[tokio::test]
async fn in_steady_state_the_operator_writes_nothing() {
    let ns = TestNs::new("steady").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-steady").await;
    op.wait_ready().await;

    let fs = create_fs(&ns, "rag", full_spec()).await;
    assert_children(&ns, &fs, true).await;
    let fs = wait_ready(&ns, "rag").await;
    let before = children_versions(&ns, &fs.name_any()).await;
    assert!(
        before.len() >= 7,
        "expected the FaasService and its children: {before:?}"
    );
    let reconciles_before = op.reconciles().await.expect("metrics");

    observe_for(window()).await;

    let after = children_versions(&ns, "rag").await;
    let reconciles_after = op.reconciles().await.expect("metrics");
    assert_eq!(
        before,
        after,
        "resourceVersions changed in steady state ({} reconciles in the window)",
        reconciles_after - reconciles_before
    );
    drop(op);
}
