//! Children under churn: FaasServices deleted while they are reconciled, children deleted by
//! hand, and objects of someone else that hold a child's name.

use std::collections::BTreeMap;
use std::time::Duration;

use faas_crds::FaasService;
use faas_e2e::faults::{children_problems, managed_children, reconcile_failures};
use faas_e2e::{TestNs, WAIT, api_error, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::common::*;

const ROUNDS: usize = 30;

/// FaasServices created and deleted at once, 30 times (every third time under the same name,
/// so a new one meets the children of the one before): no child is left behind, and the
/// operator counts no failed reconcile for them (a service deleted under a reconcile ends it).
/// Then children deleted by hand come back, and objects someone else made under a child's
/// name are neither adopted nor overwritten: the FaasService says ChildConflict and names
/// them, and gets its own once they are gone.
#[tokio::test]
async fn deleted_in_flight_deleted_by_hand_and_names_taken_by_others() {
    let ns = TestNs::new("churn").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-churn").await;
    op.wait_ready().await;
    let failures_before = reconcile_failures(&op).await.expect("metrics");

    let api = ns.api::<FaasService>();
    for round in 0..ROUNDS {
        let name = if round % 3 == 0 {
            "flap".to_string()
        } else {
            format!("flap-{round}")
        };
        // The previous FaasService of that name may still be on its way out.
        wait_for(&format!("creating FaasService {name}"), WAIT, || async {
            let fs: FaasService = serde_json::from_value(json!({
                "apiVersion": "faas.motadata.io/v1alpha1", "kind": "FaasService",
                "metadata": { "name": name }, "spec": { "component": "gateway", "replicas": 1 },
            }))
            .expect("a FaasService");
            api.create(&PostParams::default(), &fs)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        // Let some reconciles get under way before the delete.
        if round % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        api.delete(&name, &DeleteParams::background())
            .await
            .unwrap_or_else(|e| panic!("deleting FaasService {name}: {e}"));
    }
    let left = wait_for(
        "every child of the deleted FaasServices to be gone",
        WAIT,
        || async {
            let services = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let children = managed_children(&ns).await.map_err(|e| e.to_string())?;
            if services.items.is_empty() && children.is_empty() {
                Ok(children)
            } else {
                Err(format!(
                    "{} FaasServices, children {:?}",
                    services.items.len(),
                    children.keys().collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;
    assert!(left.is_empty());
    // Settled: the count stays where it is (no retry loop is running).
    let failures = reconcile_failures(&op).await.expect("metrics") - failures_before;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let failures_later = reconcile_failures(&op).await.expect("metrics") - failures_before;
    assert_eq!(
        failures_later,
        failures,
        "failures keep being counted after the churn:\n{}",
        op.log_tail(30)
    );
    eprintln!("[e2e] {ROUNDS} FaasServices deleted in flight: {failures} failed reconciles");
    assert!(
        failures <= 2.0,
        "{failures} failed reconciles for {ROUNDS} FaasServices deleted in flight:\n{}",
        op.log_tail(30)
    );

    // Children deleted by hand are made again, owned by their FaasService.
    let fs = create_fs(
        &ns,
        "kept",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    wait_ready(&ns, "kept").await;
    let cm: ConfigMap = wait_obj(&ns, "kept-config", "exists", |_| true).await;
    let svc: Service = wait_obj(&ns, "kept", "exists", |_| true).await;
    let dp = DeleteParams::background();
    ns.api::<ConfigMap>()
        .delete("kept-config", &dp)
        .await
        .expect("deleting the ConfigMap");
    ns.api::<Service>()
        .delete("kept", &dp)
        .await
        .expect("deleting the Service");
    let cm2: ConfigMap = wait_obj(&ns, "kept-config", "made again", |c: &ConfigMap| {
        c.uid() != cm.uid()
    })
    .await;
    let svc2: Service = wait_obj(&ns, "kept", "made again", |s: &Service| {
        s.uid() != svc.uid()
    })
    .await;
    assert_owned(&cm2, &fs);
    assert_owned(&svc2, &fs);
    wait_ready(&ns, "kept").await;
    let problems = children_problems(&ns).await.expect("listing children");
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Names someone else holds: a ConfigMap for one FaasService, a Deployment for another.
    let theirs = ConfigMap {
        metadata: ObjectMeta {
            name: Some("taken-config".into()),
            labels: Some(BTreeMap::from([("team".into(), "theirs".into())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("owner".into(), "someone else".into())])),
        ..ConfigMap::default()
    };
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &theirs)
        .await
        .expect("creating their ConfigMap");
    let their_deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "taken-deploy" },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": "theirs" } },
            "template": {
                "metadata": { "labels": { "app": "theirs" } },
                "spec": { "containers": [{ "name": "main", "image": "registry.e2e.local/theirs:1" }] }
            }
        }
    }))
    .expect("a Deployment");
    ns.api::<Deployment>()
        .create(&PostParams::default(), &their_deployment)
        .await
        .expect("creating their Deployment");
    create_fs(
        &ns,
        "taken",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    create_fs(
        &ns,
        "taken-deploy",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    for (name, kind, child) in [
        ("taken", "ConfigMap", "taken-config"),
        ("taken-deploy", "Deployment", "taken-deploy"),
    ] {
        let fs = wait_fs(&ns, name, "ChildConflict", |f| {
            condition(f, "Ready").is_some_and(|(s, r, _)| s == "False" && r == "ChildConflict")
        })
        .await;
        let (_, _, message) = condition(&fs, "Ready").expect("Ready");
        assert!(
            message.contains(&format!("{kind} {child}")) && message.contains("has no controller"),
            "{}",
            describe(&fs)
        );
        assert_eq!(
            condition(&fs, "Degraded").map(|c| (c.0, c.1)),
            Some(("True".into(), "ChildConflict".into()))
        );
    }
    let cm = ns
        .api::<ConfigMap>()
        .get("taken-config")
        .await
        .expect("their ConfigMap");
    assert_eq!(cm.data, theirs.data);
    assert_eq!(cm.metadata.labels, theirs.metadata.labels);
    assert!(cm.owner_references().is_empty(), "{cm:?}");
    let managers: Vec<String> = cm
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        !managers.iter().any(|m| m.starts_with("faas-operator")),
        "the operator wrote their ConfigMap: {managers:?}"
    );
    let d = ns
        .api::<Deployment>()
        .get("taken-deploy")
        .await
        .expect("their Deployment");
    assert!(d.owner_references().is_empty(), "{d:?}");
    assert_eq!(image_of(&d), "registry.e2e.local/theirs:1");
    assert_eq!(d.spec.replicas, Some(0));

    // Once their ConfigMap is gone, the FaasService gets its own.
    ns.api::<ConfigMap>()
        .delete("taken-config", &dp)
        .await
        .map_err(|e| api_error(&e))
        .expect("deleting their ConfigMap");
    let fs = ns
        .api::<FaasService>()
        .get("taken")
        .await
        .expect("FaasService");
    wait_ready(&ns, "taken").await;
    let ours: ConfigMap = wait_obj(&ns, "taken-config", "ours", |_| true).await;
    assert_owned(&ours, &fs);
    drop(op);
}
