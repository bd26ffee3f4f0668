//! A FaasService's children, its status, rollouts, pruning, drift repair and garbage collection.

use faas_crds::FaasService;
use faas_e2e::TestNs;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::common::*;

const CONFIG_HASH: &str = "faas.motadata.io/config-hash";

#[tokio::test]
async fn children_with_owner_references_and_status_from_progressing_to_ready_then_gc() {
    let ns = TestNs::new("children").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-children").await;
    op.wait_ready().await;

    // Pods that no node accepts stay Pending: the service is still progressing.
    let mut spec = full_spec();
    spec["nodeSelector"] = json!({ "faas.motadata.io/e2e-no-such-node": "true" });
    let fs = create_fs(&ns, "rag", spec).await;
    assert_children(&ns, &fs, true).await;
    let fs_now = wait_fs(&ns, "rag", "Progressing=True, Ready=False", |f| {
        has(f, "Progressing", "True") && has(f, "Ready", "False")
    })
    .await;
    assert_eq!(
        condition(&fs_now, "Degraded").map(|c| c.0).as_deref(),
        Some("False"),
        "{}",
        describe(&fs_now)
    );

    // Let the pods schedule: kwok's simulated pods become Ready.
    patch_spec(&ns, "rag", json!({ "nodeSelector": null })).await;
    let ready = wait_ready(&ns, "rag").await;
    let status = ready.status.clone().expect("status");
    let url = format!("http://rag.{}.svc.cluster.local", ns.name);
    assert_eq!(status.url.as_deref(), Some(url.as_str()));
    assert_eq!(
        status.external_url.as_deref(),
        Some("http://rag.e2e.example.com/")
    );
    assert_eq!(status.ready_replicas, Some(2), "{}", describe(&ready));
    let (_, _, message) = condition(&ready, "Ready").expect("Ready condition");
    assert!(message.contains(&url), "Ready message: {message}");

    // Deleting the FaasService lets the garbage collector delete every child.
    ns.api::<FaasService>()
        .delete("rag", &DeleteParams::background())
        .await
        .expect("deleting the FaasService");
    wait_gone::<Deployment>(&ns, "rag").await;
    wait_gone::<Service>(&ns, "rag").await;
    wait_gone::<ServiceAccount>(&ns, "rag").await;
    wait_gone::<ConfigMap>(&ns, "rag-config").await;
    wait_gone::<HorizontalPodAutoscaler>(&ns, "rag").await;
    wait_gone::<Ingress>(&ns, "rag").await;
    drop(op);
}

#[tokio::test]
async fn failing_pods_make_the_service_degraded() {
    let ns = TestNs::new("degraded").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-degraded").await;
    op.wait_ready().await;

    // kwok reports pods with this label as crash-looping (tests/e2e/controlplane/stages).
    create_fs(
        &ns,
        "gateway",
        json!({
            "component": "gateway",
            "replicas": 1,
            "podLabels": { "faas.motadata.io/simulate": "fail" }
        }),
    )
    .await;
    let fs = wait_fs(&ns, "gateway", "Degraded=True", |f| {
        has(f, "Degraded", "True") && has(f, "Ready", "False")
    })
    .await;
    let (_, reason, message) = condition(&fs, "Degraded").expect("Degraded");
    assert_eq!(reason, "PodsFailing", "{}", describe(&fs));
    assert!(message.contains("CrashLoopBackOff"), "{message}");

    // Healthy pods again: the label goes, a new ReplicaSet rolls out, the service recovers.
    patch_spec(&ns, "gateway", json!({ "podLabels": null })).await;
    wait_ready(&ns, "gateway").await;
    drop(op);
}

#[tokio::test]
async fn spec_changes_roll_out_removed_parts_are_pruned_and_edits_are_reverted() {
    let ns = TestNs::new("rollout").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-e2e", "op-rollout").await;
    op.wait_ready().await;

    let mut spec = full_spec();
    spec["image"] = json!("registry.e2e.local/faas-runtime:1.0.0");
    let fs = create_fs(&ns, "rag", spec).await;
    assert_children(&ns, &fs, true).await;
    wait_ready(&ns, "rag").await;
    let first: Deployment = wait_obj(&ns, "rag", "exists", |_| true).await;
    assert_eq!(image_of(&first), "registry.e2e.local/faas-runtime:1.0.0");
    let first_hash = template_annotation(&first, CONFIG_HASH).expect("config hash annotation");

    // Image: the pod template changes and a new ReplicaSet rolls out.
    patch_spec(
        &ns,
        "rag",
        json!({ "image": "registry.e2e.local/faas-runtime:1.0.1" }),
    )
    .await;
    wait_obj::<Deployment, _>(&ns, "rag", "image 1.0.1", |d| {
        image_of(d) == "registry.e2e.local/faas-runtime:1.0.1"
    })
    .await;
    wait_ready(&ns, "rag").await;
    let sets = replica_sets(&ns, "rag").await;
    let with = |image: &str| {
        sets.iter()
            .filter(|rs| {
                rs.spec
                    .template
                    .as_ref()
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|p| p.containers.first())
                    .and_then(|c| c.image.as_deref())
                    == Some(image)
            })
            .count()
    };
    assert_eq!(
        with("registry.e2e.local/faas-runtime:1.0.0"),
        1,
        "{} ReplicaSets",
        sets.len()
    );
    assert_eq!(
        with("registry.e2e.local/faas-runtime:1.0.1"),
        1,
        "{} ReplicaSets",
        sets.len()
    );

    // Config: the ConfigMap changes and its hash rolls the pods.
    let cm_before: ConfigMap = wait_obj(&ns, "rag-config", "exists", |_| true).await;
    patch_spec(
        &ns,
        "rag",
        json!({ "config": { "FAAS_MAX_BODY_BYTES": 2097152 } }),
    )
    .await;
    let rolled: Deployment = wait_obj(&ns, "rag", "new config hash", |d| {
        template_annotation(d, CONFIG_HASH).is_some_and(|h| h != first_hash)
    })
    .await;
    let cm_after: ConfigMap = wait_obj(&ns, "rag-config", "changed data", |c: &ConfigMap| {
        c.data != cm_before.data
    })
    .await;
    assert!(
        format!("{:?}", cm_after.data).contains("2097152"),
        "ConfigMap data: {:?}",
        cm_after.data
    );
    wait_ready(&ns, "rag").await;
    assert_eq!(
        replica_sets(&ns, "rag").await.len(),
        3,
        "a ReplicaSet per template"
    );
    drop(rolled);

    // Replicas instead of autoscaling, no ingress: the HPA and the Ingress are pruned.
    patch_spec(
        &ns,
        "rag",
        json!({ "autoscaling": null, "ingress": null, "replicas": 3 }),
    )
    .await;
    wait_gone::<HorizontalPodAutoscaler>(&ns, "rag").await;
    wait_gone::<Ingress>(&ns, "rag").await;
    wait_obj::<Deployment, _>(&ns, "rag", "3 replicas", |d| d.spec.replicas == Some(3)).await;
    let fs = wait_ready(&ns, "rag").await;
    assert_eq!(fs.status.as_ref().and_then(|s| s.ready_replicas), Some(3));
    assert_eq!(
        fs.status.as_ref().and_then(|s| s.external_url.clone()),
        None
    );

    // A manual edit of a child is put back.
    let before: Deployment = wait_obj(&ns, "rag", "exists", |_| true).await;
    ns.api::<Deployment>()
        .patch(
            "rag",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": "registry.e2e.local/tampered:6.6.6"
                }]))
                .expect("JSON patch"),
            ),
        )
        .await
        .expect("editing the Deployment");
    let repaired: Deployment = wait_obj(&ns, "rag", "image put back", |d| {
        image_of(d) == "registry.e2e.local/faas-runtime:1.0.1"
            && d.resource_version() != before.resource_version()
    })
    .await;
    assert_eq!(image_of(&repaired), "registry.e2e.local/faas-runtime:1.0.1");
    // Overwrite the operator's own key (keys added by others are theirs under server-side apply).
    let key = cm_after
        .data
        .as_ref()
        .and_then(|d| d.keys().next().cloned())
        .expect("a ConfigMap key");
    ns.api::<ConfigMap>()
        .patch(
            "rag-config",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { key: "{}" } })),
        )
        .await
        .expect("editing the ConfigMap");
    wait_obj::<ConfigMap, _>(&ns, "rag-config", "data put back", |c| {
        c.data == cm_after.data
    })
    .await;
    wait_ready(&ns, "rag").await;
    drop(op);
}
