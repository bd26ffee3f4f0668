//! The offline check of an Agent (`faas_crds::offline::check_agent`, which the prompt
//! generator holds every generated Agent to) agrees with the API server: each candidate is
//! checked offline and sent as a server-side dry-run apply with strict field validation,
//! as `kubectl apply --server-side` sends it, and both must accept or both refuse.

use faas_crds::Agent;
use faas_e2e::{TestNs, api_error};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

fn agent(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "faas.motadata.io/v1alpha1",
        "kind": "Agent",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn base() -> Value {
    json!({
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "systemPrompt": "Help.",
        "serviceRef": {"name": "agents"},
    })
}

fn with(mut spec: Value, field: &str, value: Value) -> Value {
    spec[field] = value;
    spec
}

#[tokio::test]
async fn the_offline_check_of_an_agent_agrees_with_the_api_server() {
    let ns = TestNs::new("offline").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::erase::<Agent>(&()),
    );
    let http = |url: &str| json!([{"name": "call", "type": "http", "http": {"url": url}}]);
    let cases: Vec<(&str, Value)> = vec![
        ("plain", base()),
        (
            "with-tools",
            with(
                base(),
                "tools",
                json!([
                    {"name": "now", "type": "builtin", "builtin": {"name": "current-time"}},
                    {"name": "docs", "type": "rag", "rag": {"collections": ["manuals"], "topK": 3}},
                    {"name": "ticket", "type": "http", "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
                     "http": {"url": "https://desk.example.com/t/{id}", "method": "GET",
                              "headers": [{"name": "Authorization", "secretKeyRef": {"name": "desk", "key": "token"}}]}},
                ]),
            ),
        ),
        (
            "with-memory",
            with(
                base(),
                "memory",
                json!({"type": "summary", "size": 10, "ttl": "1h30m"}),
            ),
        ),
        // Structural: ranges, enums, lengths, required fields, unknown fields.
        (
            "too-many-iterations",
            with(base(), "maxIterations", json!(101)),
        ),
        (
            "hot",
            with(
                base(),
                "model",
                json!({"provider": "openai", "name": "m", "temperature": 2.5}),
            ),
        ),
        ("no-model", {
            let mut s = base();
            s.as_object_mut().unwrap().remove("model");
            s
        }),
        (
            "bad-tool-type",
            with(base(), "tools", json!([{"name": "x", "type": "teleport"}])),
        ),
        ("unknown-field", with(base(), "surprise", json!(true))),
        (
            "unknown-nested",
            with(
                base(),
                "model",
                json!({"provider": "p", "name": "m", "color": "red"}),
            ),
        ),
        ("wrong-type", with(base(), "timeoutSeconds", json!("soon"))),
        // CEL rules.
        (
            "both-prompts",
            with(base(), "promptTemplateRef", json!({"name": "t"})),
        ),
        ("no-prompt", {
            let mut s = base();
            s.as_object_mut().unwrap().remove("systemPrompt");
            s
        }),
        (
            "ftp",
            with(base(), "tools", http("ftp://files.example.com/")),
        ),
        (
            "http-without-settings",
            with(base(), "tools", json!([{"name": "x", "type": "http"}])),
        ),
        (
            "rag-on-builtin",
            with(
                base(),
                "tools",
                json!([{"name": "x", "type": "builtin",
            "builtin": {"name": "calculator"}, "rag": {"collections": ["c"]}}]),
            ),
        ),
        (
            "same-names",
            with(
                base(),
                "tools",
                json!([
                    {"name": "a", "type": "builtin", "builtin": {"name": "calculator"}},
                    {"name": "a", "type": "builtin", "builtin": {"name": "current-time"}},
                ]),
            ),
        ),
        (
            "bad-tool-name",
            with(
                base(),
                "tools",
                json!([{"name": "9lives", "type": "builtin", "builtin": {"name": "calculator"}}]),
            ),
        ),
        (
            "two-values",
            with(
                base(),
                "tools",
                json!([{"name": "x", "type": "http", "http": {"url": "https://a.example.com/",
            "headers": [{"name": "A", "value": "v", "secretKeyRef": {"name": "s", "key": "k"}}]}}]),
            ),
        ),
        (
            "bad-secret-name",
            with(
                base(),
                "tools",
                json!([{"name": "x", "type": "http", "http": {"url": "https://a.example.com/",
            "headers": [{"name": "A", "secretKeyRef": {"name": "Not_A_Name", "key": "k"}}]}}]),
            ),
        ),
        (
            "size-without-memory",
            with(base(), "memory", json!({"type": "none", "size": 3})),
        ),
        (
            "bad-ttl",
            with(base(), "memory", json!({"type": "window", "ttl": "a day"})),
        ),
        ("bad-tenant", with(base(), "tenant", json!("Team_A"))),
    ];
    let mut disagreements = Vec::new();
    for (name, spec) in &cases {
        let object = agent(name, spec.clone());
        let offline = faas_crds::offline::check_agent(&object);
        let typed: DynamicObject = serde_json::from_value(object).unwrap();
        let server = api
            .patch(
                name,
                &PatchParams::apply("offline-check")
                    .dry_run()
                    .validation_strict(),
                &Patch::Apply(&typed),
            )
            .await;
        match (&offline, &server) {
            (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
            (Ok(_), Err(e)) => disagreements.push(format!(
                "{name}: admitted offline, refused by the API server: {}",
                api_error(e)
                    .map(|(_, m)| m)
                    .unwrap_or_else(|| e.to_string())
            )),
            (Err(p), Ok(_)) => disagreements.push(format!(
                "{name}: refused offline ({}), admitted by the API server",
                p.join("; ")
            )),
        }
        // A CEL rule's message reads the same offline as from the API server.
        if let (Err(problems), Err(e)) = (&offline, &server)
            && let Some((_, message)) = api_error(e)
            && message.contains("spec.tools names must be unique")
        {
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("spec.tools names must be unique"))
            );
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    // Every case was tried on a real server: nothing of it was stored.
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
