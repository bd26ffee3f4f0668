//! The pods of an agent service can read the Secret keys its Agents' tools name, and only
//! those: the Deployment follows the Agents as they are created, changed and deleted.

use std::collections::BTreeMap;

use faas_crds::Agent;
use faas_e2e::{Database, TestNs};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::common::*;

const LEASE: &str = "faas-operator-e2e";
const MOUNT: &str = "/var/run/faas/agent-secrets";

fn agent_json(key: &str) -> Value {
    json!({
        "apiVersion": "faas.motadata.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "helper"},
        "spec": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "systemPrompt": "You help.",
            "serviceRef": {"name": "agents"},
            "tools": [{
                "name": "lookup",
                "type": "http",
                "http": {
                    "url": "https://helpdesk.e2e.example.com/lookup",
                    "headers": [
                        {"name": "Accept", "value": "application/json"},
                        {"name": "Authorization", "secretKeyRef": {"name": "helpdesk-api", "key": key}},
                    ],
                },
            }],
        },
    })
}

fn volume(d: &Deployment) -> Option<Volume> {
    d.spec
        .template
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "agent-secrets")
        .cloned()
}

fn secrets_dir_env(d: &Deployment) -> Option<String> {
    d.spec.template.spec.as_ref()?.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "FAAS_AGENT_SECRETS_DIR")
        .and_then(|e| e.value.clone())
}

/// The (key, path) items of the volume's one source, when it has exactly one, for Secret
/// helpdesk-api, optional, with mode 0440.
fn items(d: &Deployment) -> Option<Vec<(String, String)>> {
    let projected = volume(d)?.projected?;
    assert_eq!(projected.default_mode, Some(0o440));
    let sources = projected.sources.unwrap_or_default();
    assert_eq!(sources.len(), 1, "{sources:?}");
    let secret = sources[0].secret.clone().expect("a Secret source");
    assert_eq!(
        (secret.name.as_str(), secret.optional),
        ("helpdesk-api", Some(true))
    );
    Some(
        secret
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.key, i.path))
            .collect(),
    )
}

#[tokio::test]
async fn an_agent_service_mounts_the_secret_keys_its_agents_name_and_follows_them() {
    let ns = TestNs::new("toolsecrets").await;
    ns.create_backend_secrets().await;
    let db = Database::new().await;
    let op = ns
        .start_operator_with_database(LEASE, "op-toolsecrets", &db.url)
        .await;
    op.wait_ready().await;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("helpdesk-api".into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([
            ("authorization".to_string(), "Bearer e2e-one".to_string()),
            ("refresh".to_string(), "e2e-two".to_string()),
            ("unrelated".to_string(), "e2e-three".to_string()),
        ])),
        ..Secret::default()
    };
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating the tool's Secret");

    create_fs(&ns, "agents", json!({"component": "agent"})).await;
    let d: Deployment = wait_obj(&ns, "agents", "exists", |_| true).await;
    assert!(volume(&d).is_none() && secrets_dir_env(&d).is_none());

    let agent: Agent = serde_json::from_value(agent_json("authorization")).unwrap();
    ns.api::<Agent>()
        .create(&PostParams::default(), &agent)
        .await
        .expect("creating the Agent");
    let path = |key: &str| format!("{}/helpdesk-api/{key}", ns.name);
    let d: Deployment = wait_obj(&ns, "agents", "mounts the named key", |d| {
        items(d) == Some(vec![("authorization".into(), path("authorization"))])
    })
    .await;
    assert_eq!(secrets_dir_env(&d).as_deref(), Some(MOUNT));
    let mount = d.spec.template.spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "agent-secrets")
        .cloned()
        .expect("mounted");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        (MOUNT, Some(true))
    );
    // The API server took the pod template: the service comes up with it.
    wait_ready(&ns, "agents").await;

    ns.api::<Agent>()
        .patch(
            "helper",
            &PatchParams::default(),
            &Patch::Merge(agent_json("refresh")),
        )
        .await
        .expect("changing the tool's key");
    wait_obj::<Deployment, _>(&ns, "agents", "follows the key", |d| {
        items(d) == Some(vec![("refresh".into(), path("refresh"))])
    })
    .await;

    ns.api::<Agent>()
        .delete("helper", &DeleteParams::default())
        .await
        .expect("deleting the Agent");
    let d: Deployment = wait_obj(&ns, "agents", "no volume left", |d| volume(d).is_none()).await;
    assert_eq!(secrets_dir_env(&d), None);
    wait_gone::<Agent>(&ns, "helper").await;
    drop(op);
}
