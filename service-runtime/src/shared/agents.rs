//! Agents as more than one component uses them: the checks of a definition, the URL
//! templates of HTTP tools, and the rows of the agents table (which the agent component
//! serves and the prompt generator creates).

use chrono::{DateTime, Utc};
use faas_model::agent::{Definition, ToolSettings};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::platform::egress::EgressPolicy;
use crate::platform::{ApiError, ApiResult};

/// A validator of a tool's JSON Schema; remote references are never fetched.
pub fn compile_schema(schema: &Map<String, Value>) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(&Value::Object(schema.clone()))
        .map_err(|e| format!("not a usable JSON Schema: {e}"))
}

/// The names between braces in a URL template, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    out
}

/// Checks a URL template as far as can be without arguments: its placeholders, and the
/// egress policy for its scheme and host (placeholders in the host are refused).
pub fn check_template(template: &str, policy: &EgressPolicy) -> Result<(), String> {
    for p in placeholders(template) {
        if p.is_empty() || p.len() > 64 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "the placeholder {{{p}}} must be 1 to 64 letters, digits or '_'"
            ));
        }
    }
    let authority = template
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .unwrap_or_default();
    if authority.contains('{') {
        return Err("placeholders are only allowed in the path and the query".into());
    }
    let url = sample_url(template, SAMPLE)?;
    // The authority as the URL parser reads it: `https:///{h}.com` has host `{h}.com`.
    if url.origin() != sample_url(template, "other")?.origin() {
        return Err("placeholders are only allowed in the path and the query".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials; send them in a header from a Secret".into());
    }
    policy.check_url(&url).map_err(|r| r.to_string())
}

/// Unreserved characters as they are, every other byte percent-encoded.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The template with each placeholder replaced by the argument of its name (taken out of
/// `args`), percent-encoded; `sample` fills in a fixed word instead.
/// What [`fill`] puts for every placeholder when it makes a sample URL.
pub const SAMPLE: &str = "placeholder";

/// The template with `word` for every placeholder, parsed; with [`SAMPLE`], its origin is
/// the one every call must go to.
pub fn sample_url(template: &str, word: &str) -> Result<url::Url, String> {
    let sample = fill(template, &mut Map::new(), Some(word))?;
    url::Url::parse(&sample).map_err(|_| "not a valid URL".to_string())
}

pub fn fill(
    template: &str,
    args: &mut Map<String, Value>,
    sample: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 1..start + len];
        if let Some(word) = sample {
            out.push_str(word);
        } else {
            let value = match args.remove(name) {
                Some(Value::String(s)) => s,
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                Some(_) => {
                    return Err(format!(
                        "the argument {name} must be a string, a number or a boolean"
                    ));
                }
                None => {
                    return Err(format!(
                        "the argument {name} is required (the URL needs it)"
                    ));
                }
            };
            // A whole path segment of `.` or `..` would be resolved away, leaving the path
            // the template fixes.
            if value == "." || value == ".." {
                return Err(format!("the argument {name} may not be '.' or '..'"));
            }
            out.push_str(&encode(&value));
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What is wrong with the definition `d` under `policy`: the model's own rules, the
/// JSON Schemas of the tools' parameters, and the URLs of HTTP tools,, each naming its field;
/// empty when nothing is.
pub fn definition_problems(policy: &EgressPolicy, d: &Definition) -> Vec<String> {
    let mut problems: Vec<String> = match d.validate() {
        Ok(()) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    };
    for (i, tool) in d.tools.iter().enumerate() {
        if let Some(params) = &tool.parameters
            && let Err(e) = compile_schema(params)
        {
            problems.push(format!("tools[{i}].parameters: {e}"));
        }
        if let Some(ToolSettings::Http(h)) = tool.settings()
            && let Err(e) = check_template(&h.url, policy)
        {
            problems.push(format!("tools[{i}].http.url: {e}"));
        }
    }
    problems
}

/// An agent as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    pub id: Uuid,
    pub name: String,
    /// The definition, with its defaults filled in.
    #[schema(value_type = faas_model::agent::Definition)]
    pub definition: sqlx::types::Json<Value>,
    /// `api` (managed here) or `resource` (managed by an Agent resource, read-only here).
    #[schema(pattern = "^(api|resource)$")]
    pub source: String,
    /// SHA-256 (hex) of the definition's canonical JSON.
    pub content_hash: String,
    /// Starts at 1, and grows by one each time the definition changes.
    pub revision: i32,
    /// For resource-managed agents: the version of the prompt template resolved.
    pub prompt_template_version: Option<i32>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const AGENT_COLUMNS: &str = "id, name, definition, source, content_hash, revision, \
     prompt_template_version, created_by, created_at, updated_at";

/// Creates the API-managed agent `name` inside the caller's tenant transaction, which
/// commits it; a conflict when the tenant has an agent of that name.
pub async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &str,
    name: &str,
    definition: &Definition,
    user: &str,
) -> ApiResult<Agent> {
    let created = sqlx::query_as::<_, Agent>(&format!(
        "INSERT INTO agents (tenant_id, name, definition, content_hash, created_by) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO NOTHING \
         RETURNING {AGENT_COLUMNS}"
    ))
    .bind(tenant)
    .bind(name)
    .bind(sqlx::types::Json(definition))
    .bind(definition.content_hash())
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    created.ok_or_else(|| ApiError::Conflict(format!("the tenant has an agent named {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_are_filled_and_checked() {
        let mut args = Map::new();
        args.insert("id".into(), json!("a b/../c"));
        args.insert("n".into(), json!(3));
        args.insert("rest".into(), json!(true));
        let url = fill("https://h.example.com/t/{id}?n={n}", &mut args, None).unwrap();
        assert_eq!(url, "https://h.example.com/t/a%20b%2F..%2Fc?n=3");
        assert_eq!(args.len(), 1);
        assert!(fill("https://h/{x}", &mut Map::new(), None).is_err());
        for dots in [".", ".."] {
            let mut args = Map::new();
            args.insert("id".into(), json!(dots));
            assert!(fill("https://h/a/{id}/b", &mut args, None).is_err());
        }
        let p = EgressPolicy::default();
        assert!(check_template("https://api.example.org/{id}", &p).is_ok());
        assert!(check_template("https://{host}.example.org/", &p).is_err());
        // Spellings whose host the URL parser finds after the first slash.
        for sneaky in [
            "https:///{h}.com/x",
            "https://\\/{h}.com/x",
            "https:/{h}.com/x",
        ] {
            let e = check_template(sneaky, &p).unwrap_err();
            assert!(e.contains("only allowed in the path"), "{sneaky}: {e}");
        }
        assert!(check_template("http://169.254.169.254/latest", &p).is_err());
        assert!(check_template("http://localhost:8080/", &p).is_err());
        assert!(check_template("https://u:p@api.example.org/", &p).is_err());
        assert!(check_template("https://api.example.org/{a-b}", &p).is_err());
    }
}
