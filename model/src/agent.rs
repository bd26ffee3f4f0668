//! The definition of an agent: what an Agent resource declares and the agent component
//! loads — its model, instructions, tools, memory, retrieval and limits.
//!
//! Credentials never appear here: a tool names the Secret key that holds one, and whoever
//! calls the tool reads the value.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Default of [`Definition::max_iterations`].
pub const DEFAULT_MAX_ITERATIONS: i32 = 10;
/// Default of [`Definition::timeout_seconds`].
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 120;
/// Default of [`HttpTool::timeout_seconds`].
pub const DEFAULT_TOOL_TIMEOUT_SECONDS: i32 = 30;
/// Default of [`RagSettings::top_k`].
pub const DEFAULT_TOP_K: i32 = 5;
/// Messages a window or summary memory keeps when its size is not given, and the memory of
/// an agent that declares none.
pub const DEFAULT_MEMORY_SIZE: i32 = 20;

/// An agent.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    /// The model the agent calls through the gateway.
    pub model: ModelSettings,
    /// Instructions given to the model as the system message; exclusive with
    /// `prompt_template_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 65536)]
    pub system_prompt: Option<String>,
    /// A prompt template whose rendering is the system message; exclusive with
    /// `system_prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template_ref: Option<PromptTemplateRef>,
    /// Tools the model may call, with unique names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 64)]
    pub tools: Vec<Tool>,
    /// What the agent remembers between turns of a chat session; see [`Definition::memory`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Retrieval before each model call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag: Option<RagSettings>,
    /// Most model calls (steps of the tool-calling loop) in one task.
    #[serde(default = "default_max_iterations")]
    #[schema(minimum = 1, maximum = 100, default = 10)]
    pub max_iterations: i32,
    /// Most time one task may take, in seconds.
    #[serde(default = "default_timeout_seconds")]
    #[schema(minimum = 1, maximum = 3600, default = 120)]
    pub timeout_seconds: i32,
}

fn default_max_iterations() -> i32 {
    DEFAULT_MAX_ITERATIONS
}

fn default_timeout_seconds() -> i32 {
    DEFAULT_TIMEOUT_SECONDS
}

/// A model and its sampling settings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSettings {
    /// Provider registered in the gateway.
    #[schema(min_length = 1, max_length = 63)]
    pub provider: String,
    /// Model name as the provider knows it.
    #[schema(min_length = 1, max_length = 253)]
    pub name: String,
    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    /// Most tokens the model may produce in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<i32>,
}

/// A prompt template and the values of its variables.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptTemplateRef {
    /// Name of the template.
    #[schema(min_length = 1, max_length = 253)]
    pub name: String,
    /// Values of the template's variables, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Value>,
}

/// A tool the model may call. The field named by `kind` holds its settings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tool {
    /// Name the model calls the tool by: a letter, then letters, digits, '_' and '-'.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
    pub name: String,
    /// What the tool does, told to the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096)]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub kind: ToolKind,
    /// JSON Schema of the arguments the model passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag: Option<RagSettings>,
    /// Another agent, called with the model's arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinTool>,
}

/// Kinds of tools.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum ToolKind {
    Http,
    Rag,
    Agent,
    Builtin,
}

impl ToolKind {
    /// Every kind.
    pub const ALL: &'static [ToolKind] = <ToolKind as strum::VariantArray>::VARIANTS;
}

/// The settings of a tool, by kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ToolSettings<'a> {
    Http(&'a HttpTool),
    Rag(&'a RagSettings),
    Agent(&'a AgentRef),
    Builtin(&'a BuiltinTool),
}

impl Tool {
    /// The settings of the tool's kind; `None` when they are missing.
    pub fn settings(&self) -> Option<ToolSettings<'_>> {
        match self.kind {
            ToolKind::Http => self.http.as_ref().map(ToolSettings::Http),
            ToolKind::Rag => self.rag.as_ref().map(ToolSettings::Rag),
            ToolKind::Agent => self.agent.as_ref().map(ToolSettings::Agent),
            ToolKind::Builtin => self.builtin.as_ref().map(ToolSettings::Builtin),
        }
    }

    /// The kinds whose settings are given.
    fn given(&self) -> Vec<ToolKind> {
        [
            (ToolKind::Http, self.http.is_some()),
            (ToolKind::Rag, self.rag.is_some()),
            (ToolKind::Agent, self.agent.is_some()),
            (ToolKind::Builtin, self.builtin.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, given)| given.then_some(k))
        .collect()
    }
}

/// An HTTP endpoint called with the model's arguments as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTool {
    /// http:// or https:// URL; `{name}` in its path or query is replaced by the
    /// argument of that name.
    #[schema(max_length = 2048, pattern = "^https?://")]
    pub url: String,
    #[serde(default = "default_method")]
    pub method: HttpMethod,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Most time one call may take, in seconds.
    #[serde(default = "default_tool_timeout")]
    #[schema(minimum = 1, maximum = 600, default = 30)]
    pub timeout_seconds: i32,
}

fn default_method() -> HttpMethod {
    HttpMethod::Post
}

fn default_tool_timeout() -> i32 {
    DEFAULT_TOOL_TIMEOUT_SECONDS
}

/// HTTP methods a tool may use.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    PartialEq,
    Eq,
    Hash,
    strum::VariantArray,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A header of an http tool: a literal value, or a reference to the Secret key holding it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    #[schema(min_length = 1, max_length = 256)]
    pub name: String,
    /// A literal value; exclusive with `secret_key_ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 8192)]
    pub value: Option<String>,
    /// Where the value is kept; exclusive with `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the agent's namespace.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    #[schema(pattern = "^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")]
    pub name: String,
    #[schema(min_length = 1, max_length = 253)]
    pub key: String,
}

/// Retrieval settings.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RagSettings {
    /// Collections searched, at least one.
    #[schema(min_items = 1, max_items = 32)]
    pub collections: Vec<String>,
    /// Passages retrieved.
    #[serde(default = "default_top_k")]
    #[schema(minimum = 1, maximum = 100, default = 5)]
    pub top_k: i32,
}

fn default_top_k() -> i32 {
    DEFAULT_TOP_K
}

/// Another agent, by name.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRef {
    #[schema(min_length = 1, max_length = 253)]
    pub name: String,
}

/// A tool the runtime implements.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltinTool {
    pub name: BuiltinName,
}

/// Builtin tools.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    PartialEq,
    Eq,
    Hash,
    strum::VariantArray,
)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinName {
    CurrentTime,
    Calculator,
    WebFetch,
}

/// Memory of chat sessions.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Memory {
    #[serde(rename = "type")]
    pub kind: MemoryKind,
    /// Messages kept verbatim; [`DEFAULT_MEMORY_SIZE`] when absent. Not allowed with
    /// `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub size: Option<i32>,
    /// How long an idle session is remembered: a duration such as `90s`, `30m`, `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// Kinds of memory.
#[derive(
    Debug,
    Clone,
    Copy,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    PartialEq,
    Eq,
    Hash,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    /// Each turn stands alone.
    None,
    /// The last `size` messages.
    Window,
    /// A running summary plus the last `size` messages.
    Summary,
}

impl Memory {
    /// Messages kept verbatim: none for `none`, else `size` or [`DEFAULT_MEMORY_SIZE`].
    pub fn messages_kept(&self) -> i32 {
        match self.kind {
            MemoryKind::None => 0,
            _ => self.size.unwrap_or(DEFAULT_MEMORY_SIZE),
        }
    }

    /// The idle time after which a session is forgotten, in seconds; `None` when not given
    /// or not a duration.
    pub fn ttl_seconds(&self) -> Option<u64> {
        self.ttl.as_deref().and_then(parse_duration)
    }
}

/// Seconds of a duration written as one or more `<digits><s|m|h>` parts: `90s`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => digits.push(c),
            's' | 'm' | 'h' if !digits.is_empty() => {
                let n: u64 = digits.parse().ok()?;
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    _ => 3600,
                };
                total = total.checked_add(n.checked_mul(unit)?)?;
                digits.clear();
            }
            _ => return None,
        }
    }
    digits.is_empty().then_some(total)
}

impl Definition {
    /// SHA-256 (lower-case hex) of the definition's camelCase JSON form with the keys of
    /// every object sorted and no white space: the operator and the runtime compute it
    /// alike, so a stored row tells whether its content changed. Defaults count as
    /// written: a definition that spells out a default hashes like one that omits it.
    pub fn content_hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut text = String::new();
        canonical(&value, &mut text);
        let digest = Sha256::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The memory in effect: the declared one, else a window of [`DEFAULT_MEMORY_SIZE`]
    /// messages.
    pub fn memory(&self) -> Memory {
        self.memory.clone().unwrap_or(Memory {
            kind: MemoryKind::Window,
            size: None,
            ttl: None,
        })
    }

    /// Checks what the type cannot say: exactly one source of instructions, unique and
    /// well-formed tool names, the settings of each tool's kind and only those, one value
    /// source per header, memory settings that fit its kind, and every number within its
    /// bounds. Returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut c = Checker::default();
        let m = &self.model;
        c.length("model.provider", &m.provider, 1, 63);
        c.length("model.name", &m.name, 1, 253);
        if let Some(t) = m.temperature
            && !(0.0..=2.0).contains(&t)
        {
            c.push("model.temperature", "must be between 0 and 2");
        }
        if let Some(n) = m.max_tokens {
            c.range("model.maxTokens", n, 1, 1_000_000);
        }
        match (&self.system_prompt, &self.prompt_template_ref) {
            (Some(p), None) => c.length("systemPrompt", p, 1, 65536),
            (None, Some(r)) => c.length("promptTemplateRef.name", &r.name, 1, 253),
            _ => c.push("", "set exactly one of systemPrompt and promptTemplateRef"),
        }
        if self.tools.len() > 64 {
            c.push("tools", "at most 64");
        }
        let mut names = HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            c.tool(&format!("tools[{i}]"), tool);
            if !names.insert(tool.name.as_str()) {
                c.push(
                    format!("tools[{i}].name"),
                    format!("{} is declared twice", tool.name),
                );
            }
        }
        if let Some(mem) = &self.memory {
            c.memory(mem);
        }
        if let Some(r) = &self.rag {
            c.rag("rag", r);
        }
        c.range("maxIterations", self.max_iterations, 1, 100);
        c.range("timeoutSeconds", self.timeout_seconds, 1, 3600);
        if c.problems.is_empty() {
            Ok(())
        } else {
            Err(c.problems)
        }
    }
}

/// `value` as JSON text with the keys of every object in byte order, whatever order the
/// map type keeps.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A problem with a definition, and the field it is in.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema, PartialEq, Eq)]
pub struct ValidationError {
    /// The field, as a path in the definition's JSON form: `tools[1].http.url`,
    /// `memory.size`, … Empty when the definition as a whole is at fault.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.location, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

#[derive(Default)]
struct Checker {
    problems: Vec<ValidationError>,
}

impl Checker {
    fn push(&mut self, location: impl Into<String>, message: impl Into<String>) {
        self.problems.push(ValidationError {
            location: location.into(),
            message: message.into(),
        });
    }

    fn length(&mut self, location: &str, s: &str, min: usize, max: usize) {
        let n = s.chars().count();
        if n < min || n > max {
            self.push(location, format!("must have {min} to {max} characters"));
        }
    }

    fn range(&mut self, location: &str, n: i32, min: i32, max: i32) {
        if !(min..=max).contains(&n) {
            self.push(location, format!("must be between {min} and {max}"));
        }
    }

    fn tool(&mut self, at: &str, tool: &Tool) {
        let name_ok = tool.name.starts_with(|c: char| c.is_ascii_alphabetic())
            && tool
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            && tool.name.len() <= 64;
        if !name_ok {
            self.push(
                format!("{at}.name"),
                "must start with a letter and contain only letters, digits, '_' and '-' (at most 64)",
            );
        }
        if let Some(d) = &tool.description {
            self.length(&format!("{at}.description"), d, 0, 4096);
        }
        for given in tool.given() {
            if given != tool.kind {
                self.push(
                    format!("{at}.{given}"),
                    format!("only allowed on tools of type {given}"),
                );
            }
        }
        match tool.settings() {
            None => self.push(
                format!("{at}.{}", tool.kind),
                format!("required for tools of type {}", tool.kind),
            ),
            Some(ToolSettings::Http(h)) => self.http(&format!("{at}.http"), h),
            Some(ToolSettings::Rag(r)) => self.rag(&format!("{at}.rag"), r),
            Some(ToolSettings::Agent(a)) => {
                self.length(&format!("{at}.agent.name"), &a.name, 1, 253)
            }
            Some(ToolSettings::Builtin(_)) => {}
        }
    }

    fn http(&mut self, at: &str, h: &HttpTool) {
        let scheme = h.url.starts_with("http://") || h.url.starts_with("https://");
        if !scheme || h.url.len() > 2048 {
            self.push(
                format!("{at}.url"),
                "must be an http:// or https:// URL of at most 2048 characters",
            );
        }
        if h.headers.len() > 32 {
            self.push(format!("{at}.headers"), "at most 32");
        }
        for (j, header) in h.headers.iter().enumerate() {
            let here = format!("{at}.headers[{j}]");
            self.length(&format!("{here}.name"), &header.name, 1, 256);
            match (&header.value, &header.secret_key_ref) {
                (Some(v), None) => self.length(&format!("{here}.value"), v, 0, 8192),
                (None, Some(s)) => self.secret(&format!("{here}.secretKeyRef"), s),
                _ => self.push(here, "set exactly one of value and secretKeyRef"),
            }
        }
        self.range(&format!("{at}.timeoutSeconds"), h.timeout_seconds, 1, 600);
    }

    fn secret(&mut self, at: &str, s: &SecretKeyRef) {
        let b = s.name.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let name_ok = !b.is_empty()
            && b.len() <= 253
            && b.first().is_some_and(edge)
            && b.last().is_some_and(edge)
            && b.iter().all(|c| edge(c) || matches!(c, b'-' | b'.'));
        if !name_ok {
            self.push(
                format!("{at}.name"),
                "must be a valid Secret name (lowercase letters, digits, '-' and '.')",
            );
        }
        self.length(&format!("{at}.key"), &s.key, 1, 253);
    }

    fn rag(&mut self, at: &str, r: &RagSettings) {
        if r.collections.is_empty() || r.collections.len() > 32 {
            self.push(format!("{at}.collections"), "must list 1 to 32 collections");
        }
        for (i, c) in r.collections.iter().enumerate() {
            if !crate::rag::is_collection_name(c) {
                self.push(
                    format!("{at}.collections[{i}]"),
                    format!(
                        "must be 1 to {} of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
                        crate::rag::MAX_COLLECTION_NAME
                    ),
                );
            }
        }
        self.range(&format!("{at}.topK"), r.top_k, 1, 100);
    }

    fn memory(&mut self, m: &Memory) {
        if let Some(size) = m.size {
            if m.kind == MemoryKind::None {
                self.push("memory.size", "has no meaning when memory.type is none");
            } else {
                self.range("memory.size", size, 1, 1000);
            }
        }
        if let Some(ttl) = &m.ttl
            && (ttl.len() < 2 || ttl.len() > 32 || parse_duration(ttl).is_none())
        {
            self.push(
                "memory.ttl",
                "must be a duration such as 90s, 30m, 24h or 1h30m",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition(v: Value) -> Definition {
        serde_json::from_value(v).expect("definition parses")
    }

    fn support() -> Value {
        json!({
            "model": {"provider": "openai", "name": "gpt-4o-mini", "temperature": 0.2, "maxTokens": 1024},
            "promptTemplateRef": {"name": "support-assistant", "variables": {"product": "AIOps", "words": 200}},
            "tools": [
                {"name": "lookup_ticket", "type": "http", "parameters": {"type": "object"},
                 "http": {"url": "https://helpdesk.example.com/api", "headers": [
                     {"name": "Accept", "value": "application/json"},
                     {"name": "Authorization", "secretKeyRef": {"name": "helpdesk-api", "key": "authorization"}}
                 ]}},
                {"name": "search_docs", "type": "rag", "rag": {"collections": ["docs"]}},
                {"name": "triage", "type": "agent", "agent": {"name": "triage"}},
                {"name": "now", "type": "builtin", "builtin": {"name": "current-time"}}
            ],
            "memory": {"type": "window", "size": 20, "ttl": "24h"},
            "maxIterations": 8
        })
    }

    fn locations(d: &Definition) -> Vec<String> {
        d.validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.location)
            .collect()
    }

    #[test]
    fn a_valid_definition_passes_and_gets_defaults() {
        let d = definition(support());
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(d.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
        assert_eq!(d.max_iterations, 8);
        let http = d.tools[0].http.as_ref().unwrap();
        assert_eq!(http.method, HttpMethod::Post);
        assert_eq!(http.timeout_seconds, 30);
        assert_eq!(d.tools[1].rag.as_ref().unwrap().top_k, 5);
        assert_eq!(d.memory().ttl_seconds(), Some(86_400));
        assert_eq!(
            d.prompt_template_ref.as_ref().unwrap().variables["words"],
            json!(200)
        );
        // camelCase both ways.
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(back["model"]["maxTokens"], 1024);
        assert_eq!(
            back["tools"][0]["http"]["headers"][1]["secretKeyRef"]["key"],
            "authorization"
        );
        assert_eq!(definition(back), d);
    }

    #[test]
    fn each_tool_kind_has_its_settings() {
        let d = definition(support());
        let kinds: Vec<_> = d.tools.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, ToolKind::ALL);
        assert!(matches!(d.tools[0].settings(), Some(ToolSettings::Http(_))));
        assert!(
            matches!(d.tools[3].settings(), Some(ToolSettings::Builtin(b)) if b.name == BuiltinName::CurrentTime)
        );

        let mut v = support();
        v["tools"][1]["http"] = json!({"url": "https://x"});
        v["tools"][2] = json!({"name": "triage", "type": "agent"});
        let d = definition(v);
        assert_eq!(locations(&d), ["tools[1].http", "tools[2].agent"]);
        let p = d.validate().unwrap_err();
        assert_eq!(
            p[0].to_string(),
            "tools[1].http: only allowed on tools of type http"
        );
        assert_eq!(
            p[1].to_string(),
            "tools[2].agent: required for tools of type agent"
        );
    }

    #[test]
    fn instructions_come_from_exactly_one_place() {
        let mut v = support();
        v["systemPrompt"] = json!("Be brief.");
        assert_eq!(locations(&definition(v.clone())), [""]);
        v.as_object_mut().unwrap().remove("promptTemplateRef");
        assert_eq!(definition(v.clone()).validate(), Ok(()));
        v.as_object_mut().unwrap().remove("systemPrompt");
        let p = definition(v).validate().unwrap_err();
        assert_eq!(
            p[0].to_string(),
            "set exactly one of systemPrompt and promptTemplateRef"
        );
    }

    #[test]
    fn names_headers_memory_and_bounds_are_checked() {
        let mut v = support();
        v["tools"][2]["name"] = json!("lookup_ticket");
        v["tools"][3]["name"] = json!("1now");
        v["tools"][0]["http"]["url"] = json!("ftp://helpdesk");
        v["tools"][0]["http"]["headers"][0]["secretKeyRef"] =
            json!({"name": "Bad_Name", "key": "k"});
        v["memory"] = json!({"type": "none", "size": 3, "ttl": "1day"});
        v["model"]["temperature"] = json!(2.5);
        v["maxIterations"] = json!(0);
        v["rag"] = json!({"collections": [], "topK": 101});
        assert_eq!(
            locations(&definition(v)),
            [
                "model.temperature",
                "tools[0].http.url",
                "tools[0].http.headers[0]",
                "tools[2].name",
                "tools[3].name",
                "memory.size",
                "memory.ttl",
                "rag.collections",
                "rag.topK",
                "maxIterations",
            ]
        );
        let mut v = support();
        v["rag"] = json!({"collections": ["docs", "../etc", "Docs"], "topK": 5});
        assert_eq!(
            locations(&definition(v)),
            ["rag.collections[1]", "rag.collections[2]"]
        );
        let mut v = support();
        v["tools"][0]["http"]["headers"][1]["secretKeyRef"]["name"] = json!("Bad_Name");
        assert_eq!(
            locations(&definition(v)),
            ["tools[0].http.headers[1].secretKeyRef.name"]
        );
    }

    #[test]
    fn the_content_hash_is_canonical_and_follows_the_content() {
        let d = definition(support());
        let hash = d.content_hash();
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Key order and spelt-out defaults do not matter.
        let mut v = support();
        v["timeoutSeconds"] = json!(DEFAULT_TIMEOUT_SECONDS);
        let reordered: Value =
            serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
        assert_eq!(definition(reordered).content_hash(), hash);
        v["maxIterations"] = json!(9);
        assert_ne!(definition(v).content_hash(), hash);
        let mut text = String::new();
        canonical(&json!({"b": [1, {"d": 1, "c": "x"}], "a": null}), &mut text);
        assert_eq!(text, r#"{"a":null,"b":[1,{"c":"x","d":1}]}"#);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut v = support();
        v["surprise"] = json!(1);
        assert!(serde_json::from_value::<Definition>(v).is_err());
        let mut v = support();
        v["tools"][0]["http"]["verb"] = json!("GET");
        assert!(serde_json::from_value::<Definition>(v).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        for bad in ["", "h", "10", "1d", "1h 30m", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
