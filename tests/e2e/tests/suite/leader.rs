//! Two operator processes share one Lease: only the holder reconciles; when it dies, the other
//! takes over and keeps reconciling.

use faas_e2e::{Operator, TestNs, WAIT, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;

use crate::common::*;

const LEASE: &str = "faas-operator-e2e";

async fn holder(ns: &TestNs) -> Option<String> {
    ns.api::<Lease>()
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let ns = TestNs::new("leader").await;
    ns.create_backend_secrets().await;
    let sa = ns.install_chart_rbac(LEASE).await;
    let kubeconfig = ns.service_account_kubeconfig(&sa).await;
    let a = Operator::start(&ns, &kubeconfig, LEASE, "op-a", Some(4));
    let b = Operator::start(&ns, &kubeconfig, LEASE, "op-b", Some(4));
    a.wait_ready().await;
    b.wait_ready().await;

    // Exactly one of them leads, and the Lease names it.
    let leader_id = wait_for("one leader", WAIT, || async {
        let la = a.is_leader().await.map_err(|e| e.to_string())?;
        let lb = b.is_leader().await.map_err(|e| e.to_string())?;
        let h = holder(&ns).await;
        match (la, lb, h) {
            (true, false, Some(h)) if h == a.identity => Ok(h),
            (false, true, Some(h)) if h == b.identity => Ok(h),
            other => Err(format!(
                "a leads: {}, b leads: {}, Lease holder: {:?}",
                other.0, other.1, other.2
            )),
        }
    })
    .await;
    let (mut leader, standby) = if leader_id == a.identity {
        (a, b)
    } else {
        (b, a)
    };

    create_fs(
        &ns,
        "gateway",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    wait_ready(&ns, "gateway").await;
    assert!(leader.reconciles().await.expect("metrics") > 0.0);
    assert_eq!(
        standby.reconciles().await.expect("metrics"),
        0.0,
        "the standby reconciled while {} held the Lease",
        leader.identity
    );
    assert!(!standby.is_leader().await.expect("metrics"));

    // The leader dies without releasing the Lease; the standby takes over once it expires.
    leader.kill();
    wait_for("the standby to lead", WAIT, || async {
        let leads = standby.is_leader().await.map_err(|e| e.to_string())?;
        let h = holder(&ns).await;
        if leads && h.as_deref() == Some(standby.identity.as_str()) {
            Ok(())
        } else {
            Err(format!("standby leads: {leads}, Lease holder: {h:?}"))
        }
    })
    .await;

    // The new leader reconciles changes.
    patch_spec(&ns, "gateway", json!({ "replicas": 2 })).await;
    wait_obj::<Deployment, _>(&ns, "gateway", "2 replicas", |d| d.spec.replicas == Some(2)).await;
    let fs = wait_ready(&ns, "gateway").await;
    assert_eq!(fs.status.as_ref().and_then(|s| s.ready_replicas), Some(2));
    assert!(standby.reconciles().await.expect("metrics") > 0.0);
    drop(leader);
    drop(standby);
}

/// A leader asked to stop (SIGTERM) releases the Lease on its way out, so a standby takes over
/// at once instead of waiting for the Lease to expire: the Lease here lasts far longer than
/// the test waits.
#[tokio::test]
async fn a_leader_that_stops_releases_the_lease() {
    const LONG_LEASE: &str = "faas-operator-e2e-long";
    let ns = TestNs::new("release").await;
    ns.create_backend_secrets().await;
    let sa = ns.install_chart_rbac(LONG_LEASE).await;
    let kubeconfig = ns.service_account_kubeconfig(&sa).await;
    let mut first = Operator::start(&ns, &kubeconfig, LONG_LEASE, "op-first", Some(600));
    first.wait_ready().await;
    wait_for("op-first to lead", WAIT, || async {
        match first.is_leader().await {
            Ok(true) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let second = Operator::start(&ns, &kubeconfig, LONG_LEASE, "op-second", Some(600));
    second.wait_ready().await;
    assert!(!second.is_leader().await.expect("metrics"));

    let code = first.terminate();
    assert_eq!(
        code,
        Some(0),
        "graceful shutdown exits 0:\n{}",
        first.log_tail(20)
    );
    assert!(
        first.log_text().contains("released the leader Lease"),
        "{}",
        first.log_tail(20)
    );

    wait_for("op-second to lead after the release", WAIT, || async {
        let leads = second.is_leader().await.map_err(|e| e.to_string())?;
        let lease = ns.api::<Lease>().get_opt(LONG_LEASE).await.ok().flatten();
        let h = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity);
        if leads && h.as_deref() == Some("op-second") {
            Ok(())
        } else {
            Err(format!("op-second leads: {leads}, Lease holder: {h:?}"))
        }
    })
    .await;
    create_fs(
        &ns,
        "gateway",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    wait_ready(&ns, "gateway").await;
    drop(second);
}
