//! An Agent checked the way the API server would check it, without one: the structural
//! schema the CRD carries (with unknown fields refused rather than pruned), the typed
//! conversion, and the CRD's CEL rules, evaluated in process. Used where an Agent is written
//! by something other than a person, so that what is handed out applies cleanly.

use std::sync::LazyLock;

use serde_json::Value;

use crate::Agent;

/// The `openAPIV3Schema` of the Agent CRD, exactly as the CRD carries it.
pub fn agent_schema() -> &'static Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
        let crd = crate::generate::crds()
            .into_iter()
            .find(|(plural, _)| *plural == "agents")
            .map(|(_, crd)| crd)
            .expect("the agents CRD is generated");
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a derived CRD has an openAPIV3Schema");
        serde_json::to_value(schema).expect("a schema serializes")
    });
    &SCHEMA
}

/// `schema` with every object that lists its properties closed to others: the API server
/// would silently drop an unknown field, and what is checked here must be what lands.
fn closed(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        // A map of schemas by property name.
                        ("properties", Value::Object(props)) => Value::Object(
                            props.iter().map(|(n, s)| (n.clone(), closed(s))).collect(),
                        ),
                        // Keywords whose values are schemas, or lists of them.
                        (
                            "items" | "additionalProperties" | "allOf" | "anyOf" | "oneOf" | "not",
                            v,
                        ) => closed(v),
                        (_, v) => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            let open = map
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if out.contains_key("properties") && !open && !out.contains_key("additionalProperties")
            {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(closed).collect()),
        other => other.clone(),
    }
}

/// `value` without members whose value is null, at every depth: the API server drops them
/// before it validates.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// A JSON pointer (`/spec/tools/0/name`) written as a field path (`spec.tools[0].name`).
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    if out.is_empty() { "(root)".into() } else { out }
}

/// The problems of an Agent, each naming its field; empty when it would be admitted.
pub type Problems = Vec<String>;

/// The most problems reported of one object: enough to correct it, never a flood.
const MAX_PROBLEMS: usize = 32;

/// `object` (a whole Agent: apiVersion, kind, metadata, spec) as the API server would
/// admit it, typed, or every problem found. The metadata is checked for a valid name and
/// namespace; status is refused, being the operator's to write.
pub fn check_agent(object: &Value) -> Result<Agent, Problems> {
    static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
        // The root lists only spec and status; the envelope is checked below.
        let mut schema = closed(agent_schema());
        schema["additionalProperties"] = Value::Bool(true);
        jsonschema::validator_for(&schema).expect("the CRD's own schema is a valid JSON Schema")
    });
    let object = without_nulls(object);
    let mut problems: Problems = VALIDATOR
        .iter_errors(&object)
        .take(MAX_PROBLEMS)
        .map(|e| format!("{}: {e}", field_path(e.instance_path.as_str())))
        .collect();
    if object.get("status").is_some() {
        problems.push("status: written by the operator; leave it out".into());
    }
    for (field, value) in [("apiVersion", crate::API_VERSION), ("kind", "Agent")] {
        if object.get(field).and_then(Value::as_str) != Some(value) {
            problems.push(format!("{field}: must be {value:?}"));
        }
    }
    let meta = object.get("metadata");
    match meta.and_then(|m| m.get("name")).and_then(Value::as_str) {
        Some(name) if is_subdomain(name) => {}
        _ => problems.push(
            "metadata.name: 1 to 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit".into(),
        ),
    }
    if let Some(ns) = meta.and_then(|m| m.get("namespace"))
        && !ns.as_str().is_some_and(|n| n.len() <= 63 && is_label(n))
    {
        problems.push("metadata.namespace: a DNS label of at most 63 characters".into());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let agent: Agent = serde_path_to_error::deserialize(&object).map_err(|e| {
        vec![format!(
            "{}: {}",
            e.path(),
            e.inner()
                .to_string()
                .split(" at line")
                .next()
                .unwrap_or_default()
        )]
    })?;
    Agent::validate_cel(&agent).map_err(|errors| {
        errors
            .iter()
            .take(MAX_PROBLEMS)
            .map(ToString::to_string)
            .collect::<Problems>()
    })?;
    Ok(agent)
}

/// A DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter
/// or digit.
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// A DNS-1123 subdomain of at most 253 characters: labels joined by '.'.
fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|l| l.len() <= 63 && is_label(l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent(spec: Value) -> Value {
        json!({
            "apiVersion": "faas.motadata.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "helper", "namespace": "team-a"},
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

    fn problems(spec: Value) -> Vec<String> {
        check_agent(&agent(spec)).expect_err("refused")
    }

    #[test]
    fn a_valid_agent_is_admitted_with_its_defaults() {
        let mut spec = base();
        spec["tools"] = json!([{"name": "now", "type": "builtin", "builtin": {"name": "current-time"}, "description": null}]);
        let a = check_agent(&agent(spec)).unwrap();
        assert_eq!(a.spec.max_iterations, 10);
        assert_eq!(a.spec.tools[0].name, "now");
    }

    #[test]
    fn structural_errors_name_their_field() {
        let mut spec = base();
        spec["maxIterations"] = json!(1000);
        spec["surprise"] = json!(true);
        spec["tools"] = json!([{"name": "x", "type": "teleport"}]);
        let p = problems(spec).join("\n");
        assert!(p.contains("spec.maxIterations"), "{p}");
        assert!(p.contains("surprise"), "{p}");
        assert!(p.contains("spec.tools[0].type"), "{p}");
    }

    #[test]
    fn cel_rules_are_evaluated() {
        let mut spec = base();
        spec["promptTemplateRef"] = json!({"name": "t"});
        let p = problems(spec).join("\n");
        assert!(p.contains("exactly one of spec.systemPrompt"), "{p}");

        let mut spec = base();
        spec["tools"] = json!([
            {"name": "a", "type": "http", "http": {"url": "ftp://x"}},
            {"name": "a", "type": "rag"},
        ]);
        let p = problems(spec).join("\n");
        assert!(p.contains("http:// or https://"), "{p}");
        assert!(p.contains("names must be unique"), "{p}");
        assert!(p.contains("rag is required"), "{p}");

        let mut spec = base();
        spec["memory"] = json!({"type": "none", "size": 3, "ttl": "soon"});
        let p = problems(spec).join("\n");
        assert!(p.contains("size has no meaning"), "{p}");
        assert!(p.contains("ttl must be a duration"), "{p}");
    }

    #[test]
    fn metadata_and_envelope_are_checked() {
        let mut a = agent(base());
        a["metadata"]["name"] = json!("Not A Name");
        a["kind"] = json!("Pod");
        a["status"] = json!({});
        let p = check_agent(&a).unwrap_err().join("\n");
        assert!(p.contains("metadata.name"), "{p}");
        assert!(p.contains("kind"), "{p}");
        assert!(p.contains("status"), "{p}");
    }

    #[test]
    fn field_paths_read_like_kubernetes() {
        assert_eq!(
            field_path("/spec/tools/0/http/url"),
            "spec.tools[0].http.url"
        );
        assert_eq!(field_path(""), "(root)");
    }
}
