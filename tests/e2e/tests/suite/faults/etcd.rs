//! etcd goes away and comes back under a running operator.

use std::time::Duration;

use faas_e2e::faults::ControlPlane;
use faas_e2e::{TestNs, WAIT, admin_client, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use serde_json::json;

use crate::common::*;

const OUTAGE: Duration = Duration::from_secs(15);

/// etcd is killed and started again 15 seconds later on the same data directory. The
/// operator's watches recover by themselves: a FaasService created after etcd is back, and a
/// change to one made before, are reconciled by the same operator process, without waiting
/// for the periodic resync (ten minutes).
#[tokio::test]
async fn watches_recover_after_etcd_restarts() {
    let plane = ControlPlane::from_env();
    let ns = TestNs::new("etcd").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-etcd").await;
    op.wait_ready().await;
    let pid = op.pid().expect("the operator runs");
    create_fs(
        &ns,
        "before",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    wait_ready(&ns, "before").await;

    let outage = plane.crash("etcd");
    tokio::time::sleep(OUTAGE).await;
    assert_eq!(op.exit_code(), None, "{}", op.log_tail(40));
    outage.end();
    // The API server answers again once it has reconnected to etcd.
    let admin = admin_client().await;
    wait_for("the API server to serve again", WAIT, || async {
        Api::<Namespace>::all(admin.clone())
            .list(&ListParams::default().limit(1))
            .await
            .map_err(|e| e.to_string())
    })
    .await;

    let fs = create_fs(
        &ns,
        "after",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    patch_spec(&ns, "before", json!({ "replicas": 2 })).await;
    wait_ready(&ns, "after").await;
    assert_children(&ns, &fs, false).await;
    wait_obj::<Deployment, _>(&ns, "before", "2 replicas", |d| d.spec.replicas == Some(2)).await;
    wait_fs(&ns, "before", "2 ready replicas", |f| {
        f.status.as_ref().and_then(|s| s.ready_replicas) == Some(2)
    })
    .await;
    assert_eq!(op.exit_code(), None, "{}", op.log_tail(40));
    assert_eq!(op.pid(), Some(pid));
    drop(op);
}
