//! The operator works under the chart's ServiceAccount, and that identity gets nothing more.

use faas_e2e::{TestNs, api_error, client_from};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::common::*;

const LEASE: &str = "faas-operator-e2e";

async fn can(client: &Client, verb: &str, group: &str, resource: &str, ns: Option<&str>) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: ns.map(str::to_string),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn the_chart_service_account_is_enough_and_no_more() {
    let ns = TestNs::new("rbac").await;
    ns.create_backend_secrets().await;
    let sa = ns.install_chart_rbac(LEASE).await;
    let kubeconfig = ns.service_account_kubeconfig(&sa).await;
    let op = faas_e2e::Operator::start(&ns, &kubeconfig, LEASE, "op-rbac", None);
    op.wait_ready().await;

    // Enough: a FaasService with every optional child becomes Ready, and nothing was refused.
    let fs = create_fs(&ns, "rag", full_spec()).await;
    assert_children(&ns, &fs, true).await;
    wait_ready(&ns, "rag").await;
    let log = op.log_text();
    for word in ["forbidden", "Forbidden", " 403"] {
        assert!(
            !log.contains(word),
            "the operator was refused something ({word:?}):\n{}",
            op.log_tail(40)
        );
    }

    // No more: what the chart does not grant is refused.
    let sa_client = client_from(&kubeconfig)
        .await
        .expect("ServiceAccount client");
    let n = Some(ns.name.as_str());
    for (verb, group, resource, namespace, allowed) in [
        ("get", "", "secrets", n, true),
        ("patch", "apps", "deployments", n, true),
        ("list", "", "pods", n, true),
        ("create", "", "events", n, true),
        ("list", "", "secrets", n, false),
        ("watch", "", "secrets", n, false),
        ("list", "", "secrets", None, false),
        ("create", "", "secrets", n, false),
        ("update", "apps", "deployments", n, false),
        ("create", "", "pods", n, false),
        ("delete", "", "pods", n, false),
        ("create", "faas.motadata.io", "faasservices", n, false),
        ("delete", "faas.motadata.io", "faasservices", n, false),
        ("delete", "", "namespaces", None, false),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            false,
        ),
        (
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            n,
            false,
        ),
        ("create", "", "serviceaccounts/token", n, false),
        ("delete", "coordination.k8s.io", "leases", n, false),
    ] {
        assert_eq!(
            can(&sa_client, verb, group, resource, namespace).await,
            allowed,
            "{verb} {group}/{resource} in {namespace:?}: expected allowed={allowed}"
        );
    }

    // And direct requests with the ServiceAccount's token are refused with 403.
    let refused = |r: Result<(), kube::Error>, what: &str| match r {
        Ok(()) => panic!("{what} was allowed"),
        Err(e) => assert_eq!(api_error(&e).map(|(c, _)| c), Some(403), "{what}: {e}"),
    };
    refused(
        Api::<Secret>::namespaced(sa_client.clone(), &ns.name)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "listing Secrets",
    );
    refused(
        Api::<Namespace>::all(sa_client.clone())
            .delete(&ns.name, &DeleteParams::default())
            .await
            .map(|_| ()),
        "deleting the namespace",
    );
    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(format!("{}-escalate", ns.release)),
            ..ObjectMeta::default()
        },
        ..ClusterRole::default()
    };
    refused(
        Api::<ClusterRole>::all(sa_client.clone())
            .create(&PostParams::default(), &role)
            .await
            .map(|_| ()),
        "creating a ClusterRole",
    );
    drop(op);
}
