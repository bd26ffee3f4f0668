//! Invalid resources are refused by the API server (CEL rules of the CRDs), with the message a
//! user sees from `kubectl apply`.

use faas_crds::{Agent, FaasService, PromptTemplate};
use faas_e2e::{TestNs, api_error};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn object(kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "faas.motadata.io/v1alpha1",
        "kind": kind,
        "metadata": { "name": name },
        "spec": spec,
    }))
    .expect("a custom object")
}

fn api_for(ns: &TestNs, kind: &str) -> Api<DynamicObject> {
    let ar = match kind {
        "FaasService" => ApiResource::erase::<FaasService>(&()),
        "Agent" => ApiResource::erase::<Agent>(&()),
        "PromptTemplate" => ApiResource::erase::<PromptTemplate>(&()),
        other => panic!("unknown kind {other}"),
    };
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

/// Creating the object fails with 422 and a message containing `expected`.
async fn refused(ns: &TestNs, kind: &str, name: &str, spec: Value, expected: &str) {
    let err = api_for(ns, kind)
        .create(&PostParams::default(), &object(kind, name, spec.clone()))
        .await
        .err()
        .unwrap_or_else(|| panic!("{kind} {name} with spec {spec} was accepted"));
    let (code, message) = api_error(&err).unwrap_or_else(|| panic!("not an API error: {err}"));
    assert_eq!(code, 422, "{kind} {name}: {message}");
    assert!(
        message.contains(expected),
        "{kind} {name}: expected the message to contain {expected:?}, got: {message}"
    );
}

async fn accepted(ns: &TestNs, kind: &str, name: &str, spec: Value) {
    api_for(ns, kind)
        .create(&PostParams::default(), &object(kind, name, spec))
        .await
        .unwrap_or_else(|e| panic!("valid {kind} {name} refused: {e}"));
}

#[tokio::test]
async fn invalid_resources_are_refused_with_the_rule_message() {
    let ns = TestNs::new("admission").await;

    // FaasService
    accepted(
        &ns,
        "FaasService",
        "valid",
        json!({ "component": "gateway", "replicas": 1 }),
    )
    .await;
    refused(
        &ns,
        "FaasService",
        "both-replicas-and-autoscaling",
        json!({
            "component": "gateway",
            "replicas": 2,
            "autoscaling": { "minReplicas": 1, "maxReplicas": 3 }
        }),
        "spec.replicas and spec.autoscaling are mutually exclusive",
    )
    .await;
    refused(
        &ns,
        "FaasService",
        "min-above-max",
        json!({
            "component": "gateway",
            "autoscaling": { "minReplicas": 5, "maxReplicas": 2 }
        }),
        "spec.autoscaling.minReplicas must be less than or equal to maxReplicas",
    )
    .await;
    for host in [
        "https://api.example.com",
        "API.example.com",
        "api.example.com:443",
    ] {
        refused(
            &ns,
            "FaasService",
            "bad-host",
            json!({
                "component": "gateway",
                "ingress": { "host": host, "path": "/" }
            }),
            "spec.ingress.host must be a lowercase DNS name",
        )
        .await;
    }

    // Agent
    let model = json!({ "provider": "openai", "name": "gpt-4o-mini" });
    accepted(
        &ns,
        "Agent",
        "valid",
        json!({
            "model": model,
            "systemPrompt": "You answer questions about invoices.",
            "serviceRef": { "name": "agents" }
        }),
    )
    .await;
    refused(
        &ns,
        "Agent",
        "both-prompts",
        json!({
            "model": model,
            "systemPrompt": "You answer questions about invoices.",
            "promptTemplateRef": { "name": "support" },
            "serviceRef": { "name": "agents" }
        }),
        "set exactly one of spec.systemPrompt and spec.promptTemplateRef",
    )
    .await;
    refused(
        &ns,
        "Agent",
        "no-prompt",
        json!({ "model": model, "serviceRef": { "name": "agents" } }),
        "set exactly one of spec.systemPrompt and spec.promptTemplateRef",
    )
    .await;

    // PromptTemplate
    accepted(
        &ns,
        "PromptTemplate",
        "valid",
        json!({
            "template": "Hello {{ name }}",
            "variables": [{ "name": "name", "required": true }]
        }),
    )
    .await;
    refused(
        &ns,
        "PromptTemplate",
        "both-forms",
        json!({
            "template": "Hello",
            "messages": [{ "role": "system", "template": "Hello" }]
        }),
        "set exactly one of spec.template and spec.messages",
    )
    .await;
    refused(
        &ns,
        "PromptTemplate",
        "neither-form",
        json!({ "variables": [{ "name": "name" }] }),
        "set exactly one of spec.template and spec.messages",
    )
    .await;
    // Every role of the prompt component; defaults of any type, kept as written.
    accepted(
        &ns,
        "PromptTemplate",
        "roles-and-defaults",
        json!({
            "messages": [
                { "role": "system", "template": "{{ a }}" },
                { "role": "developer", "template": "{{ b }}" },
                { "role": "user", "template": "{{ c }}{{ d }}" },
                { "role": "assistant", "template": "ok" },
                { "role": "tool", "template": "ok" }
            ],
            "variables": [
                { "name": "a", "type": "integer", "default": 200 },
                { "name": "b", "type": "object", "default": { "lang": "en", "tags": ["x"] } },
                { "name": "c", "default": [1, "two", true] },
                { "name": "d", "type": "string", "required": false }
            ]
        }),
    )
    .await;
    let stored = api_for(&ns, "PromptTemplate")
        .get("roles-and-defaults")
        .await
        .expect("the template was stored");
    assert_eq!(stored.data["spec"]["variables"][0]["default"], json!(200));
    assert_eq!(
        stored.data["spec"]["variables"][1]["default"],
        json!({ "lang": "en", "tags": ["x"] })
    );
    assert!(
        stored.data["spec"]["variables"][0]
            .get("required")
            .is_none(),
        "required is not defaulted: {}",
        stored.data
    );
    refused(
        &ns,
        "PromptTemplate",
        "unknown-role",
        json!({ "messages": [{ "role": "wizard", "template": "Hello" }] }),
        "spec.messages[0].role: Unsupported value: \"wizard\"",
    )
    .await;
    refused(
        &ns,
        "PromptTemplate",
        "long-variable-name",
        json!({
            "template": "Hello",
            "variables": [{ "name": "v".repeat(65) }]
        }),
        "spec.variables[0].name: Too long",
    )
    .await;
    refused(
        &ns,
        "PromptTemplate",
        "duplicate-variables",
        json!({
            "template": "Hello {{ name }}",
            "variables": [{ "name": "name" }, { "name": "name" }]
        }),
        "spec.variables names must be unique",
    )
    .await;

    // Immutability of spec.component, checked on update.
    let err = api_for(&ns, "FaasService")
        .patch(
            "valid",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "component": "rag" } })),
        )
        .await
        .expect_err("changing spec.component was accepted");
    let (code, message) = api_error(&err).expect("an API error");
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains("spec.component is immutable"),
        "unexpected message: {message}"
    );

    // The tenant of an Agent or a PromptTemplate, on update: neither changed, set, nor removed.
    accepted(
        &ns,
        "Agent",
        "tenanted",
        json!({
            "model": { "provider": "openai", "name": "gpt-4o-mini" },
            "systemPrompt": "You help.",
            "serviceRef": { "name": "agents" },
            "tenant": "team-b"
        }),
    )
    .await;
    accepted(
        &ns,
        "PromptTemplate",
        "untenanted",
        json!({ "template": "Hello" }),
    )
    .await;
    for (kind, name, tenant) in [
        ("Agent", "tenanted", json!("team-c")),
        ("Agent", "tenanted", Value::Null),
        ("PromptTemplate", "untenanted", json!("team-b")),
    ] {
        let err = api_for(&ns, kind)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "tenant": tenant } })),
            )
            .await
            .expect_err("changing spec.tenant was accepted");
        let (code, message) = api_error(&err).expect("an API error");
        assert_eq!(code, 422, "{kind} {name}: {message}");
        assert!(
            message.contains("spec.tenant cannot be changed; delete and re-create the resource"),
            "{kind} {name}: unexpected message: {message}"
        );
    }
    // Other changes still go through.
    api_for(&ns, "Agent")
        .patch(
            "tenanted",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "systemPrompt": "You help more." } })),
        )
        .await
        .expect("changing another field of the Agent");
}
