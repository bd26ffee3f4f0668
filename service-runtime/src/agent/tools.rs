//! The tools an agent's model calls: what the model is told about them, the check of the
//! arguments it writes, and the calls of HTTP tools and rag searches. A tool's failure is
//! the text the model is given (`Err`), never an error of the request: the model may
//! correct itself, and each correction costs an iteration.

use std::path::Path;
use std::time::Duration;

use faas_model::agent::{
    BuiltinName, Definition, HttpMethod, HttpTool, RagSettings, SecretKeyRef, Tool, ToolSettings,
};
use serde_json::{Map, Value, json};

use super::{Agents, Caller};
use crate::platform::http_client::{RetryPolicy, UpstreamError};
use crate::platform::telemetry::Redactor;
use crate::shared::agents::{SAMPLE, compile_schema, encode, fill, placeholders, sample_url};
use crate::shared::gateway_client::OnBehalfOf;

/// The most of the arguments of one call read.
const MAX_ARGUMENT_BYTES: usize = 64 * 1024;
/// The most of a Secret's value read.
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Problems of one argument check told to the model.
const MAX_SCHEMA_ERRORS: usize = 5;

/// The result of a tool call: the text the model reads, or why the call failed.
pub type ToolResult = Result<String, String>;

/// The JSON Schema of a tool's arguments when the definition gives none.
pub fn default_parameters(tool: &Tool) -> Value {
    let one = |name: &str, schema: Value| json!({"type": "object", "properties": {name: schema}, "required": [name]});
    match tool.settings() {
        Some(ToolSettings::Http(h)) => {
            let names = placeholders(&h.url);
            let properties: Map<String, Value> = names
                .iter()
                .map(|n| (n.to_string(), json!({"type": "string"})))
                .collect();
            json!({"type": "object", "properties": properties, "required": names})
        }
        Some(ToolSettings::Rag(_)) => one(
            "query",
            json!({"type": "string", "minLength": 1, "maxLength": 2000}),
        ),
        Some(ToolSettings::Agent(_)) => one("input", json!({"type": "string", "minLength": 1})),
        Some(ToolSettings::Builtin(b)) => match b.name {
            BuiltinName::CurrentTime => json!({"type": "object", "properties": {}}),
            BuiltinName::Calculator => one(
                "expression",
                json!({"type": "string", "minLength": 1, "maxLength": 256,
                       "description": "Arithmetic: numbers, + - * / % ^, parentheses"}),
            ),
            BuiltinName::WebFetch => one("url", json!({"type": "string", "maxLength": 2048})),
        },
        None => json!({"type": "object"}),
    }
}

fn default_description(tool: &Tool) -> String {
    match tool.settings() {
        Some(ToolSettings::Http(_)) => "Calls an HTTP endpoint".into(),
        Some(ToolSettings::Rag(r)) => format!(
            "Searches the document collections {}",
            r.collections.join(", ")
        ),
        Some(ToolSettings::Agent(a)) => format!("Asks the agent {}", a.name),
        Some(ToolSettings::Builtin(b)) => match b.name {
            BuiltinName::CurrentTime => "The current date and time (UTC)".into(),
            BuiltinName::Calculator => "Evaluates an arithmetic expression".into(),
            BuiltinName::WebFetch => "Fetches a web page as text".into(),
        },
        None => String::new(),
    }
}

/// The schema the arguments of `tool` are checked against.
pub fn parameters(tool: &Tool) -> Value {
    tool.parameters
        .clone()
        .map(Value::Object)
        .unwrap_or_else(|| default_parameters(tool))
}

/// The tools in the OpenAI shape.
pub fn specs(d: &Definition) -> Vec<Value> {
    d.tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {
                "name": t.name,
                "description": t.description.clone().unwrap_or_else(|| default_description(t)),
                "parameters": parameters(t),
            }})
        })
        .collect()
}

/// The arguments the model wrote, read and checked against the tool's schema.
pub fn check_arguments(tool: &Tool, text: &str) -> Result<Map<String, Value>, String> {
    if text.len() > MAX_ARGUMENT_BYTES {
        return Err(format!(
            "the arguments are longer than {MAX_ARGUMENT_BYTES} bytes"
        ));
    }
    let text = if text.trim().is_empty() { "{}" } else { text };
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the arguments are not valid JSON: {e}"))?;
    let Value::Object(args) = value else {
        return Err("the arguments must be a JSON object".into());
    };
    let schema = parameters(tool);
    let Value::Object(schema) = schema else {
        return Err("the tool's parameters are not a JSON Schema object".into());
    };
    let validator = compile_schema(&schema)?;
    let instance = Value::Object(args);
    let problems: Vec<String> = validator
        .iter_errors(&instance)
        .take(MAX_SCHEMA_ERRORS)
        .map(|e| {
            let at = e.instance_path.to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "the arguments do not match the tool's schema: {}",
            problems.join("; ")
        ));
    }
    let Value::Object(args) = instance else {
        unreachable!("an object was checked")
    };
    Ok(args)
}

/// A Kubernetes Secret's name: a DNS subdomain.
fn valid_secret_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 253
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || matches!(c, b'-' | b'.'))
}

/// A Secret's key as Kubernetes allows it, and never a file of the volume's own
/// bookkeeping (`..data`, `..2024_…`).
fn valid_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with("..")
        && s != "."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The value of the tenant's Secret key, read now from the mounted volume
/// `<dir>/<tenant>/<secret>/<key>`. Names are checked before any path is made of them,
/// and the file must lie inside the tenant's folder, so a tenant can never name another
/// tenant's credential.
pub async fn read_secret(dir: Option<&Path>, tenant: &str, r: &SecretKeyRef) -> ToolResult {
    let dir = dir.ok_or_else(|| {
        format!(
            "secret {}: no Secrets are available to tools on this service",
            r.name
        )
    })?;
    if !valid_secret_name(&r.name) || !valid_secret_key(&r.key) {
        return Err(format!(
            "secret {}: not a valid Secret name and key",
            r.name
        ));
    }
    if !crate::platform::auth::valid_tenant_id(tenant) {
        return Err("the tenant has no Secrets".into());
    }
    let unreadable = || format!("secret {} has no readable key {}", r.name, r.key);
    let tenant_dir = tokio::fs::canonicalize(dir.join(tenant))
        .await
        .map_err(|_| unreadable())?;
    let file = tokio::fs::canonicalize(tenant_dir.join(&r.name).join(&r.key))
        .await
        .map_err(|_| unreadable())?;
    if !file.starts_with(&tenant_dir) {
        return Err(unreadable());
    }
    let meta = tokio::fs::metadata(&file).await.map_err(|_| unreadable())?;
    if !meta.is_file() || meta.len() > MAX_SECRET_BYTES {
        return Err(unreadable());
    }
    let bytes = tokio::fs::read(&file).await.map_err(|_| unreadable())?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable())?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

fn method(m: HttpMethod) -> reqwest::Method {
    match m {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    }
}

/// Why a call to a URL a tenant chose failed, in words that say nothing of what is
/// behind it.
fn unreachable(e: UpstreamError, timeout: Duration) -> String {
    match e {
        UpstreamError::Blocked { refusal, .. } => format!("refused: {refusal}"),
        UpstreamError::Timeout { .. } => {
            format!("the tool did not answer within {} s", timeout.as_secs())
        }
        UpstreamError::CircuitOpen(_) => {
            "the tool failed repeatedly and is paused; try again later".into()
        }
        _ => "the tool could not be reached".into(),
    }
}

/// At most `cap` bytes of an answer; more is an error.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> ToolResult {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| "the tool's answer broke off".to_string())?
    {
        if out.len() + chunk.len() > cap {
            return Err(format!("the tool's answer is longer than {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Sends a request to a URL a tenant chose, under the egress policy; the answer's text,
/// or why there is none. An error answer's body is never read: it may echo what was sent.
pub async fn send_guarded(
    agents: &Agents,
    caller: &Caller,
    req: reqwest::Request,
    timeout: Duration,
) -> ToolResult {
    let host = req.url().host_str().unwrap_or_default().to_string();
    let upstream = format!("agent-tool:{}:{host}", caller.principal.tenant_id);
    let resp = agents
        .egress
        .send(
            &upstream,
            "agent_tool",
            req,
            // A tool is someone else's endpoint: it learns nothing of who is calling.
            &caller.ctx.anonymous(),
            RetryPolicy::new(0, false),
            Some(timeout),
        )
        .await
        .map_err(|e| unreachable(e, timeout))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("the tool answered HTTP {}", status.as_u16()));
    }
    read_capped(resp, agents.settings.tool_max_response_bytes).await
}

/// Calls an HTTP tool with checked arguments: placeholders of the URL from the
/// arguments of their names, the rest as the query (GET, DELETE) or the JSON body.
/// Headers from Secrets are read now, and their values are cut out of the answer.
pub async fn call_http(
    agents: &Agents,
    caller: &Caller,
    h: &HttpTool,
    mut args: Map<String, Value>,
) -> ToolResult {
    let filled = fill(&h.url, &mut args, None)?;
    let mut url = url::Url::parse(&filled)
        .map_err(|_| "the URL made of the arguments is not valid".to_string())?;
    // Arguments fill the path and the query only: a template whose host they could
    // change (however it is spelled) sends its Secret headers nowhere else.
    if url.origin() != sample_url(&h.url, SAMPLE)?.origin() {
        return Err("the arguments would change the host the tool calls".into());
    }
    let m = method(h.method);
    let with_body = matches!(
        h.method,
        HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch
    );
    if !with_body && !args.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &args {
            match v {
                Value::String(s) => pairs.append_pair(k, s),
                other => pairs.append_pair(k, &other.to_string()),
            };
        }
    }
    let mut req = agents
        .egress
        .inner()
        .request(m, url)
        .header(reqwest::header::ACCEPT, "application/json, text/*;q=0.9");
    if with_body {
        req = req.json(&Value::Object(args));
    }
    let mut secrets = Vec::new();
    for header in &h.headers {
        let name = reqwest::header::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("the header name {:?} is not valid", header.name))?;
        let (value, secret) = match (&header.value, &header.secret_key_ref) {
            (Some(v), _) => (v.clone(), false),
            (None, Some(r)) => (
                read_secret(
                    agents.settings.secrets_dir.as_deref(),
                    &caller.principal.tenant_id,
                    r,
                )
                .await?,
                true,
            ),
            (None, None) => continue,
        };
        let mut v = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
        if secret {
            v.set_sensitive(true);
            if !value.is_empty() {
                secrets.push(value);
            }
        }
        req = req.header(name, v);
    }
    let req = req
        .build()
        .map_err(|_| "the request could not be made".to_string())?;
    let timeout = Duration::from_secs(h.timeout_seconds.max(1) as u64);
    let out = send_guarded(agents, caller, req, timeout).await?;
    Ok(Redactor::new(secrets).redact(&out).into_owned())
}

/// Searches the collections through the rag component, for the caller; the passages
/// found, best first.
pub async fn search(
    agents: &Agents,
    caller: &Caller,
    who: &OnBehalfOf,
    r: &RagSettings,
    query: &str,
) -> Result<Vec<Value>, crate::platform::ApiError> {
    use crate::platform::ApiError;
    let base = agents.settings.rag_url.as_ref().ok_or_else(|| {
        ApiError::Unavailable(format!(
            "this service has no rag component ({} is not set)",
            super::settings::RAG_URL
        ))
    })?;
    let mut hits = Vec::new();
    for c in &r.collections {
        let url = base
            .join(&format!("v1/collections/{}/query", encode(c)))
            .map_err(ApiError::internal)?;
        let body = json!({"query": query, "top_k": r.top_k.clamp(1, 50)});
        let found = super::run::peer_call(agents, caller, who, "rag", url, &body).await?;
        for h in found["hits"].as_array().into_iter().flatten() {
            hits.push(json!({
                "collection": c,
                "title": h["title"],
                "heading": h["heading"],
                "source": h["source"],
                "text": h["text"],
                "score": h["score"],
            }));
        }
    }
    hits.sort_by(|a, b| {
        let s = |v: &Value| v["score"].as_f64().unwrap_or(0.0);
        s(b).total_cmp(&s(a))
    });
    hits.truncate(r.top_k.clamp(1, 100) as usize);
    Ok(hits)
}

/// A rag tool: the passages found for the model's query, as JSON.
pub async fn call_rag(
    agents: &Agents,
    caller: &Caller,
    who: &OnBehalfOf,
    r: &RagSettings,
    args: &Map<String, Value>,
) -> ToolResult {
    let query = args
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| "the argument query (a string) is required".to_string())?;
    let hits = search(agents, caller, who, r, query)
        .await
        .map_err(|e| e.public_detail())?;
    let mut text = Value::Array(hits).to_string();
    let cap = agents.settings.tool_max_response_bytes;
    if text.len() > cap {
        let mut end = cap;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_cannot_leave_the_tenants_folder() {
        for bad in ["..", "../other", "a/b", "", ".", "..data"] {
            assert!(!valid_secret_key(bad), "{bad}");
        }
        for bad in ["..", "a/b", "A", "-a", "a_b"] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
        assert!(valid_secret_key("api.key-1_x"));
        assert!(valid_secret_name("helpdesk-api"));
    }

    #[test]
    fn redaction_replaces_every_form_of_each_secret_longest_first() {
        let r = Redactor::new(["sk-1".to_string(), "sk-1/WX\"YZ".to_string()]);
        assert_eq!(r.redact("k=sk-1 and sk-1"), "k=[redacted] and [redacted]");
        // Whole, JSON-escaped, and with the slash escaped too: never a piece left.
        for echoed in ["sk-1/WX\"YZ", "sk-1/WX\\\"YZ", "sk-1\\/WX\\\"YZ"] {
            assert_eq!(r.redact(&format!("<{echoed}>")), "<[redacted]>", "{echoed}");
        }
    }
}
