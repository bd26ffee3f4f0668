//! One generation: the model is asked, with structured output, for an Agent's name and
//! spec; each answer is checked as the API server would check the Agent (the CRD's own
//! schema and CEL rules) and as the agent component would check its definition; a refused
//! answer goes back to the model with its problems, until one passes or the attempts run out.

use std::sync::LazyLock;

use faas_crds::Agent;
use faas_model::agent::Definition;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::platform::egress::EgressPolicy;
use crate::platform::{ApiError, ApiResult, RequestContext};
use crate::shared::gateway_client::{ChatRequest, GatewayClient, Message, OnBehalfOf};

/// The annotation naming the generation an Agent came from.
pub const GENERATION_ANNOTATION: &str = "faas.motadata.io/generation";
/// The longest answer read as a candidate; a longer one is refused unread.
const MAX_ANSWER_CHARS: usize = 256 * 1024;
/// The most of a refused answer given back to the model with its problems.
const MAX_ECHO_CHARS: usize = 32 * 1024;

/// What the caller wants generated, with the request's choices made.
pub struct Order<'a> {
    pub id: Uuid,
    pub description: &'a str,
    /// The gateway model that writes it.
    pub model: &'a str,
    /// The Agent's name, when the caller chose it.
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// The agent FaasService named in spec.serviceRef.
    pub service: &'a str,
    /// The model the Agent calls, when the caller chose it: (provider, name).
    pub agent_model: Option<(&'a str, &'a str)>,
    pub attempts: u32,
    pub max_tokens: u32,
}

/// An answer that passed every check.
#[derive(Debug)]
pub struct Accepted {
    pub name: String,
    /// The whole Agent, defaults filled in, as it would be stored by the API server.
    pub agent: Value,
    pub definition: Definition,
}

/// How a generation ended.
pub struct Outcome {
    pub accepted: Option<Accepted>,
    pub attempts: u32,
    /// The problems of each refused answer.
    pub problems: Vec<Vec<String>>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The schema of the answer asked of the model: the Agent's name and its spec as the CRD
/// defines it, without what the caller decides (serviceRef, tenant) and without the
/// Kubernetes extensions (whose rules are given as text instead).
pub fn answer_schema() -> &'static Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
        let mut spec = faas_crds::offline::agent_schema()["properties"]["spec"].clone();
        for field in ["serviceRef", "tenant", "promptTemplateRef"] {
            if let Some(p) = spec.get_mut("properties").and_then(Value::as_object_mut) {
                p.remove(field);
            }
        }
        if let Some(r) = spec.get_mut("required").and_then(Value::as_array_mut) {
            r.retain(|f| f != "serviceRef");
            r.push(json!("systemPrompt"));
        }
        json!({
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "description": "The Agent's name: lower-case letters, digits and '-', at most 63 characters, naming what it does.",
                    "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                    "maxLength": 63,
                },
                "spec": without_extensions(&spec),
            },
            "required": ["name", "spec"],
            "additionalProperties": false,
        })
    });
    &SCHEMA
}

fn without_extensions(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with("x-kubernetes-"))
                .map(|(k, v)| (k.clone(), without_extensions(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_extensions).collect()),
        other => other.clone(),
    }
}

/// The message of every CEL rule of the CRD's spec, once each, in schema order.
fn rule_messages() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "x-kubernetes-validations" {
                        for rule in child.as_array().into_iter().flatten() {
                            if let Some(m) = rule["message"].as_str()
                                && !out.iter().any(|o| o == m)
                            {
                                out.push(m.to_string());
                            }
                        }
                    } else {
                        walk(child, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(
        &faas_crds::offline::agent_schema()["properties"]["spec"],
        &mut out,
    );
    out.retain(|m| !m.contains("promptTemplateRef") && !m.starts_with("spec.tenant"));
    out
}

fn instructions() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let rules = rule_messages()
            .iter()
            .map(|m| format!("- {m}"))
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "You design LLM agents for the Motadata FaaS platform. From the user's description, \
             write one agent: a short name, the model it calls, clear instructions (systemPrompt) \
             and the tools it needs.\n\
             Tools are of four types: `http` (an HTTPS endpoint called with the model's arguments \
             as JSON; its URL may hold {{placeholders}} filled from the arguments), `rag` (a search \
             of the platform's document collections), `agent` (another agent, by name) and \
             `builtin` (current-time, calculator or web-fetch). Give every tool a description and, \
             for http and agent tools, a JSON Schema of its parameters.\n\
             Credentials never appear as literal header values: a header that carries one names \
             a Secret key with secretKeyRef.\n\
             Answer with one JSON object and nothing else, matching this JSON Schema:\n{}\n\
             These rules apply too:\n{rules}",
            serde_json::to_string(answer_schema()).expect("a schema serializes")
        )
    });
    &TEXT
}

/// `answer` without a Markdown code fence around it, if it has one.
fn unfenced(answer: &str) -> &str {
    let t = answer.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// `answer` checked as a candidate for `order`: the Agent it makes, or every problem.
pub fn check(
    answer: &str,
    order: &Order<'_>,
    policy: &EgressPolicy,
) -> Result<Accepted, Vec<String>> {
    if answer.chars().count() > MAX_ANSWER_CHARS {
        return Err(vec![format!(
            "the answer is longer than {MAX_ANSWER_CHARS} characters"
        )]);
    }
    let parsed: Value = serde_json::from_str(unfenced(answer))
        .map_err(|e| vec![format!("the answer is not one JSON object: {e}")])?;
    let Value::Object(mut top) = parsed else {
        return Err(vec!["the answer is not a JSON object".into()]);
    };
    let mut problems = Vec::new();
    let unknown: Vec<&String> = top
        .keys()
        .filter(|k| *k != "name" && *k != "spec")
        .collect();
    if !unknown.is_empty() {
        problems.push(format!(
            "(root): only name and spec are expected, not {}",
            unknown
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let name = match (order.name, top.get("name")) {
        (Some(chosen), _) => chosen.to_string(),
        (None, Some(Value::String(n))) => n.clone(),
        (None, _) => {
            problems.push("name: a string is required".into());
            String::new()
        }
    };
    let mut spec = match top.remove("spec") {
        Some(Value::Object(spec)) => spec,
        _ => {
            problems.push("spec: an object is required".into());
            Map::new()
        }
    };
    for (field, why) in [
        ("tenant", "the tenant is the namespace's"),
        (
            "promptTemplateRef",
            "a generated agent carries its own systemPrompt",
        ),
    ] {
        if spec.contains_key(field) {
            problems.push(format!("spec.{field}: leave it out; {why}"));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    spec.insert("serviceRef".into(), json!({ "name": order.service }));
    if let Some((provider, model)) = order.agent_model {
        let m = spec
            .entry("model")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = m {
            m.insert("provider".into(), json!(provider));
            m.insert("name".into(), json!(model));
        }
    }
    let mut metadata = json!({
        "name": name,
        "annotations": { GENERATION_ANNOTATION: order.id.to_string() },
    });
    if let Some(ns) = order.namespace {
        metadata["namespace"] = json!(ns);
    }
    let object = json!({
        "apiVersion": faas_crds::API_VERSION,
        "kind": "Agent",
        "metadata": metadata,
        "spec": spec,
    });
    let agent: Agent = faas_crds::offline::check_agent(&object)?;
    let definition = Definition::from(&agent.spec);
    let problems = crate::shared::agents::definition_problems(policy, &definition);
    if !problems.is_empty() {
        return Err(problems.into_iter().map(|p| format!("spec.{p}")).collect());
    }
    let agent = serde_json::to_value(&agent).map_err(|e| vec![e.to_string()])?;
    Ok(Accepted {
        name,
        agent,
        definition,
    })
}

fn correction(problems: &[String]) -> String {
    format!(
        "That answer was refused:\n{}\nAnswer again with the whole corrected JSON object, and nothing else.",
        problems
            .iter()
            .map(|p| format!("- {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Runs the generation `order` through `gateway`.
pub async fn run(
    gateway: &GatewayClient,
    who: &OnBehalfOf,
    ctx: &RequestContext,
    policy: &EgressPolicy,
    order: &Order<'_>,
) -> ApiResult<Outcome> {
    let mut messages = vec![
        Message::new("system", instructions()),
        Message::new("user", order.description),
    ];
    let mut out = Outcome {
        accepted: None,
        attempts: 0,
        problems: Vec::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    while out.attempts < order.attempts {
        out.attempts += 1;
        let req = ChatRequest {
            model: order.model.to_string(),
            messages: messages.clone(),
            temperature: Some(0.2),
            max_tokens: Some(order.max_tokens),
            response_format: Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "agent", "schema": answer_schema()},
            })),
            ..Default::default()
        };
        // The model is the only thing of the request the gateway may not know.
        let done = gateway.chat(who, ctx, &req).await.map_err(|e| match e {
            ApiError::NotFound(reason) => ApiError::Validation(format!("model: {reason}")),
            other => other,
        })?;
        out.prompt_tokens = out.prompt_tokens.saturating_add(done.usage.prompt_tokens);
        out.completion_tokens = out
            .completion_tokens
            .saturating_add(done.usage.completion_tokens);
        let answer = done
            .message()
            .and_then(|m| m.content.clone())
            .unwrap_or_default();
        match check(&answer, order, policy) {
            Ok(accepted) => {
                out.accepted = Some(accepted);
                return Ok(out);
            }
            Err(problems) => {
                let echo: String = answer.chars().take(MAX_ECHO_CHARS).collect();
                messages.push(Message::new("assistant", echo));
                messages.push(Message::new("user", correction(&problems)));
                out.problems.push(problems);
            }
        }
    }
    Ok(out)
}

/// `agent` as YAML for `kubectl apply` or a GitOps repository.
pub fn yaml(generation: Uuid, agent: &Value) -> ApiResult<String> {
    let body = serde_yaml::to_string(agent).map_err(ApiError::internal)?;
    Ok(format!(
        "# Written by the Motadata FaaS prompt generator (generation {generation}).\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: Uuid) -> Order<'static> {
        Order {
            id,
            description: "an agent",
            model: "m",
            name: None,
            namespace: Some("team-a"),
            service: "agents",
            agent_model: None,
            attempts: 3,
            max_tokens: 1024,
        }
    }

    fn policy() -> EgressPolicy {
        EgressPolicy::default()
    }

    fn answer(spec: Value) -> String {
        json!({"name": "clock", "spec": spec}).to_string()
    }

    fn good_spec() -> Value {
        json!({
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "systemPrompt": "Tell the time.",
            "tools": [{"name": "now", "type": "builtin", "description": "The time.", "builtin": {"name": "current-time"}}],
        })
    }

    #[test]
    fn a_good_answer_becomes_a_whole_agent() {
        let id = Uuid::now_v7();
        let a = check(
            &format!("```json\n{}\n```", answer(good_spec())),
            &order(id),
            &policy(),
        )
        .unwrap();
        assert_eq!(a.name, "clock");
        assert_eq!(a.agent["spec"]["serviceRef"]["name"], "agents");
        assert_eq!(a.agent["spec"]["maxIterations"], 10);
        assert_eq!(a.agent["metadata"]["namespace"], "team-a");
        assert_eq!(
            a.agent["metadata"]["annotations"][GENERATION_ANNOTATION],
            id.to_string()
        );
        assert_eq!(a.definition.tools.len(), 1);
        let y = yaml(id, &a.agent).unwrap();
        let back: Value = serde_yaml::from_str(&y).unwrap();
        assert_eq!(back, a.agent);
    }

    #[test]
    fn the_callers_choices_win() {
        let mut o = order(Uuid::now_v7());
        o.name = Some("chosen");
        o.agent_model = Some(("local", "small"));
        let mut spec = good_spec();
        spec["serviceRef"] = json!({"name": "elsewhere"});
        let a = check(&answer(spec), &o, &policy()).unwrap();
        assert_eq!(a.agent["metadata"]["name"], "chosen");
        assert_eq!(a.agent["spec"]["model"]["provider"], "local");
        assert_eq!(a.agent["spec"]["serviceRef"]["name"], "agents");
    }

    #[test]
    fn bad_answers_are_refused_with_reasons() {
        let o = order(Uuid::now_v7());
        let p = |text: &str| check(text, &o, &policy()).unwrap_err().join("\n");
        assert!(p("not json").contains("not one JSON object"));
        assert!(p("[1]").contains("not a JSON object"));
        assert!(p(&json!({"spec": good_spec(), "extra": 1}).to_string()).contains("name"));
        let mut spec = good_spec();
        spec["tenant"] = json!("other");
        assert!(p(&answer(spec)).contains("spec.tenant"));
        let mut spec = good_spec();
        spec["tools"][0]["type"] = json!("http");
        assert!(p(&answer(spec)).contains("http is required"));
        let mut spec = good_spec();
        spec["tools"] = json!([{"name": "inner", "type": "http", "http": {"url": "http://169.254.169.254/latest"}}]);
        assert!(
            p(&answer(spec)).contains("spec.tools[0].http.url"),
            "{}",
            p(&answer(json!({})))
        );
        let mut spec = good_spec();
        spec["tools"][0]["parameters"] = json!({"type": 12});
        assert!(p(&answer(spec)).contains("parameters"));
        let long = "x".repeat(MAX_ANSWER_CHARS + 1);
        assert!(p(&long).contains("longer than"));
    }

    #[test]
    fn the_answer_schema_leaves_the_callers_fields_out() {
        let s = answer_schema();
        let props = s["properties"]["spec"]["properties"].as_object().unwrap();
        assert!(!props.contains_key("serviceRef") && !props.contains_key("tenant"));
        assert!(props.contains_key("tools"));
        assert!(!s.to_string().contains("x-kubernetes"));
        assert!(instructions().contains("names must be unique"));
    }
}
