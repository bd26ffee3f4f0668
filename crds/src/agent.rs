//! `Agent`: an LLM agent served by an agent FaasService.
//!
//! What the agent is — model, instructions, tools, memory, limits — converts into
//! [`faas_model::agent::Definition`], which the agent component loads.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use faas_model::agent as model;

use crate::common::{SecretKeyRef, conditions_schema, free_form_object};

/// Desired state of an Agent: its model, instructions, tools, memory and limits.
// Several printer columns share attribute values, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "faas.motadata.io",
    version = "v1alpha1",
    kind = "Agent",
    plural = "agents",
    singular = "agent",
    shortname = "agt",
    category = "faas",
    namespaced,
    cel,
    status = "AgentStatus",
    derive = "PartialEq",
    doc = "An LLM agent: model, instructions (inline or from a PromptTemplate), tools, memory and limits. The operator stores it in the platform's database and the agent FaasService named in serviceRef serves it.",
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".spec.model.name",
        description = "Model the agent calls"
    ),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.model.provider",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the agent can be invoked"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.systemPrompt) != has(self.promptTemplateRef)").message("set exactly one of spec.systemPrompt and spec.promptTemplateRef"),
    // An Agent's row is stored under its tenant: another tenant would leave them behind.
    validation = Rule::new("has(self.tenant) == has(oldSelf.tenant) && (!has(self.tenant) || self.tenant == oldSelf.tenant)").message("spec.tenant cannot be changed; delete and re-create the resource"),
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Model the agent calls through the gateway.
    pub model: ModelSpec,

    /// Instructions given to the model as the system message. Exclusive with
    /// promptTemplateRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub system_prompt: Option<String>,

    /// Take the system message from a PromptTemplate of this namespace. Exclusive with
    /// systemPrompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template_ref: Option<PromptTemplateRef>,

    /// Tools the model may call. Names are unique within the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(u, u.name == t.name))").message("spec.tools names must be unique"))]
    pub tools: Vec<Tool>,

    /// What the agent remembers between turns of a chat session. Defaults to a window of
    /// the last 20 messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,

    /// Retrieval from the platform's RAG collections before each model call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag: Option<RagSettings>,

    /// Most model calls (steps of the tool-calling loop) in one task. Defaults to 10.
    #[serde(default = "default_max_iterations")]
    #[schemars(range(min = 1, max = 100))]
    pub max_iterations: i32,

    /// Most time one task may take, in seconds. Defaults to 120.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,

    /// The agent FaasService (component `agent`) of this namespace that serves this agent.
    pub service_ref: LocalRef,

    /// Tenant the agent belongs to. Defaults to the namespace. Fixed once the Agent exists:
    /// to move it to another tenant, delete it and create it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("spec.tenant must be a lowercase name of letters, digits and '-'"))]
    pub tenant: Option<String>,
}

fn default_max_iterations() -> i32 {
    10
}

fn default_timeout_seconds() -> i32 {
    120
}

/// A model and its sampling settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Provider registered in the gateway, for example `openai`, `anthropic` or `vllm`.
    #[schemars(length(min = 1, max = 63))]
    pub provider: String,

    /// Model name as the provider knows it, for example `gpt-4o-mini`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,

    /// Most tokens the model may produce in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_tokens: Option<i32>,
}

/// A PromptTemplate and the values of its variables.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateRef {
    /// Name of the PromptTemplate, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Values of the template's variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<BTreeMap<String, String>>,
}

/// A reference to an object of the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A tool the model may call.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type == 'http' ? has(self.http) : !has(self.http)").message("spec.tools[].http is required for, and only allowed on, tools of type http"),
    validation = Rule::new("self.type == 'rag' ? has(self.rag) : !has(self.rag)").message("spec.tools[].rag is required for, and only allowed on, tools of type rag"),
    validation = Rule::new("self.type == 'agent' ? has(self.agent) : !has(self.agent)").message("spec.tools[].agent is required for, and only allowed on, tools of type agent"),
    validation = Rule::new("self.type == 'builtin' ? has(self.builtin) : !has(self.builtin)").message("spec.tools[].builtin is required for, and only allowed on, tools of type builtin"),
)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// Name the model calls the tool by: letters, digits, '_' and '-'.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z][a-zA-Z0-9_-]*$')").message("spec.tools[].name must start with a letter and contain only letters, digits, '_' and '-'"))]
    pub name: String,

    /// What the tool does, told to the model so it knows when to call it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Kind of tool: http, rag, agent or builtin. The field of the same name holds its settings.
    #[serde(rename = "type")]
    pub type_: ToolType,

    /// JSON Schema of the arguments the model passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub parameters: Option<BTreeMap<String, serde_json::Value>>,

    /// Settings of an http tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTool>,

    /// Settings of a rag tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rag: Option<RagSettings>,

    /// Settings of an agent tool (calls another Agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<LocalRef>,

    /// Settings of a builtin tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinTool>,
}

/// Kinds of tools.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ToolType {
    Http,
    Rag,
    Agent,
    Builtin,
}

/// An HTTP endpoint the agent calls with the model's arguments as JSON.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpTool {
    /// URL called, http or https.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.tools[].http.url must be an http:// or https:// URL"))]
    pub url: String,

    /// HTTP method. Defaults to POST.
    #[serde(default = "default_method")]
    pub method: HttpMethod,

    /// Headers sent with each call; values can come from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub headers: Vec<HttpHeader>,

    /// Most time one call may take, in seconds. Defaults to 30.
    #[serde(default = "default_tool_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i32,
}

fn default_method() -> HttpMethod {
    HttpMethod::Post
}

fn default_tool_timeout() -> i32 {
    30
}

/// HTTP methods a tool may use.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A header of an http tool: a literal value or one read from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.value) != has(self.secretKeyRef)").message("set exactly one of value and secretKeyRef on each header"),
)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,

    /// Literal value. Use secretKeyRef for credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub value: Option<String>,

    /// Secret key whose value is sent; the value never appears in the Agent or its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// Retrieval settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RagSettings {
    /// RAG collections searched.
    #[schemars(length(min = 1, max = 32))]
    pub collections: Vec<String>,

    /// Number of passages retrieved. Defaults to 5.
    #[serde(default = "default_top_k")]
    #[schemars(range(min = 1, max = 100))]
    pub top_k: i32,
}

fn default_top_k() -> i32 {
    5
}

/// A tool implemented by the runtime itself.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinTool {
    /// Which builtin: current-time, calculator, or web-fetch.
    pub name: BuiltinName,
}

/// Builtin tools.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BuiltinName {
    CurrentTime,
    Calculator,
    WebFetch,
}

/// Memory of chat sessions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.type != 'none' || !has(self.size)").message("spec.memory.size has no meaning when spec.memory.type is none"),
)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// none (each turn stands alone), window (the last `size` messages) or summary (a running
    /// summary plus the last `size` messages).
    #[serde(rename = "type")]
    pub type_: MemoryType,

    /// Messages kept verbatim. Defaults to 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub size: Option<i32>,

    /// How long an idle session is remembered, as a duration such as `30m`, `24h` or `1h30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(s|m|h))+$')").message("spec.memory.ttl must be a duration such as 90s, 30m, 24h or 1h30m"))]
    pub ttl: Option<String>,
}

/// Kinds of memory.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MemoryType {
    None,
    Window,
    Summary,
}

/// Observed state of an Agent.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, ReferencesResolved and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Id of the agent in the platform's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,

    /// URL that invokes the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Version of the PromptTemplate in use, when promptTemplateRef is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template_version: Option<i64>,
}

impl From<ToolType> for model::ToolKind {
    fn from(t: ToolType) -> Self {
        match t {
            ToolType::Http => model::ToolKind::Http,
            ToolType::Rag => model::ToolKind::Rag,
            ToolType::Agent => model::ToolKind::Agent,
            ToolType::Builtin => model::ToolKind::Builtin,
        }
    }
}

impl From<HttpMethod> for model::HttpMethod {
    fn from(m: HttpMethod) -> Self {
        match m {
            HttpMethod::Get => model::HttpMethod::Get,
            HttpMethod::Post => model::HttpMethod::Post,
            HttpMethod::Put => model::HttpMethod::Put,
            HttpMethod::Patch => model::HttpMethod::Patch,
            HttpMethod::Delete => model::HttpMethod::Delete,
        }
    }
}

impl From<BuiltinName> for model::BuiltinName {
    fn from(b: BuiltinName) -> Self {
        match b {
            BuiltinName::CurrentTime => model::BuiltinName::CurrentTime,
            BuiltinName::Calculator => model::BuiltinName::Calculator,
            BuiltinName::WebFetch => model::BuiltinName::WebFetch,
        }
    }
}

impl From<MemoryType> for model::MemoryKind {
    fn from(m: MemoryType) -> Self {
        match m {
            MemoryType::None => model::MemoryKind::None,
            MemoryType::Window => model::MemoryKind::Window,
            MemoryType::Summary => model::MemoryKind::Summary,
        }
    }
}

impl From<&RagSettings> for model::RagSettings {
    fn from(r: &RagSettings) -> Self {
        model::RagSettings {
            collections: r.collections.clone(),
            top_k: r.top_k,
        }
    }
}

impl From<&HttpTool> for model::HttpTool {
    /// Header values read from Secrets stay references: the Secret's name and key.
    fn from(h: &HttpTool) -> Self {
        model::HttpTool {
            url: h.url.clone(),
            method: h.method.into(),
            headers: h
                .headers
                .iter()
                .map(|header| model::HttpHeader {
                    name: header.name.clone(),
                    value: header.value.clone(),
                    secret_key_ref: header.secret_key_ref.as_ref().map(|s| model::SecretKeyRef {
                        name: s.name.clone(),
                        key: s.key.clone(),
                    }),
                })
                .collect(),
            timeout_seconds: h.timeout_seconds,
        }
    }
}

impl From<&Tool> for model::Tool {
    fn from(t: &Tool) -> Self {
        model::Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            kind: t.type_.into(),
            parameters: t.parameters.clone().map(|p| p.into_iter().collect()),
            http: t.http.as_ref().map(model::HttpTool::from),
            rag: t.rag.as_ref().map(model::RagSettings::from),
            agent: t.agent.as_ref().map(|a| model::AgentRef {
                name: a.name.clone(),
            }),
            builtin: t.builtin.as_ref().map(|b| model::BuiltinTool {
                name: b.name.into(),
            }),
        }
    }
}

impl From<&AgentSpec> for model::Definition {
    /// What the agent component runs. `serviceRef` and `tenant` say where the agent lives,
    /// not what it is, and are left out; variables of the prompt template are strings.
    fn from(spec: &AgentSpec) -> Self {
        model::Definition {
            model: model::ModelSettings {
                provider: spec.model.provider.clone(),
                name: spec.model.name.clone(),
                temperature: spec.model.temperature,
                max_tokens: spec.model.max_tokens,
            },
            system_prompt: spec.system_prompt.clone(),
            prompt_template_ref: spec.prompt_template_ref.as_ref().map(|r| {
                model::PromptTemplateRef {
                    name: r.name.clone(),
                    variables: r
                        .variables
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                }
            }),
            tools: spec.tools.iter().map(model::Tool::from).collect(),
            memory: spec.memory.as_ref().map(|m| model::Memory {
                kind: m.type_.into(),
                size: m.size,
                ttl: m.ttl.clone(),
            }),
            rag: spec.rag.as_ref().map(model::RagSettings::from),
            max_iterations: spec.max_iterations,
            timeout_seconds: spec.timeout_seconds,
        }
    }
}
