//! `PromptTemplate`: a versioned prompt served read-only by the prompt component.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::conditions_schema;

/// Desired state of a PromptTemplate: a single template or a list of chat messages, and the
/// variables they use.
// Several printer columns share attribute values, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "faas.motadata.io",
    version = "v1alpha1",
    kind = "PromptTemplate",
    plural = "prompttemplates",
    singular = "prompttemplate",
    shortname = "pt",
    category = "faas",
    namespaced,
    cel,
    status = "PromptTemplateStatus",
    derive = "PartialEq",
    doc = "A prompt template (Jinja syntax) with typed variables. The operator checks it, versions it when its content changes and publishes it to the prompt service, where it is read-only.",
    printcolumn(
        name = "Version",
        type_ = "integer",
        json_path = ".status.version",
        description = "Increments when the content changes"
    ),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status",
        description = "Whether the template parses"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.template) != has(self.messages)").message("set exactly one of spec.template and spec.messages"),
)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateSpec {
    /// What the template is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// A single template, Jinja syntax: `Summarise {{ document }} in {{ words }} words.`
    /// Exclusive with messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub template: Option<String>,

    /// Chat messages, each a template. Exclusive with template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub messages: Option<Vec<MessageTemplate>>,

    /// Variables the template uses. Rendering fails on a missing required variable and on any
    /// variable not listed here. Names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, w.name == v.name))").message("spec.variables names must be unique"))]
    pub variables: Vec<Variable>,

    /// Model settings used when a caller does not choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelDefaults>,

    /// Tenant the template belongs to. Defaults to the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("spec.tenant must be a lowercase name of letters, digits and '-'"))]
    pub tenant: Option<String>,
}

/// One chat message of a template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplate {
    /// Who speaks: system, user, assistant or tool.
    pub role: Role,

    /// Content of the message, Jinja syntax.
    #[schemars(length(min = 1, max = 262144))]
    pub template: String,
}

/// Chat roles.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// A variable of the template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!(self.required && has(self.default))").message("a required variable cannot have a default: drop required or the default"),
    validation = Rule::new("!has(self.default) || self.type != 'integer' || self.default.matches('^-?[0-9]+$')").message("the default of an integer variable must be a whole number"),
    validation = Rule::new("!has(self.default) || self.type != 'number' || self.default.matches('^-?[0-9]+(\\\\.[0-9]+)?([eE][-+]?[0-9]+)?$')").message("the default of a number variable must be a number"),
    validation = Rule::new("!has(self.default) || self.type != 'boolean' || self.default in ['true', 'false']").message("the default of a boolean variable must be true or false"),
)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    /// Name used in the template: letters, digits and '_', not starting with a digit.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("spec.variables[].name must be an identifier: letters, digits and '_', not starting with a digit"))]
    pub name: String,

    /// What the variable holds, for people and for prompt generators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Whether rendering fails when the variable is not given. Defaults to false.
    #[serde(default)]
    pub required: bool,

    /// Value used when the variable is not given, written as text and read according to
    /// `type`: `100` for an integer, `true` for a boolean, `["a", "b"]` for an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub default: Option<String>,

    /// Type of the value: string (default), number, integer, boolean, array or object.
    #[serde(rename = "type", default = "default_variable_type")]
    pub type_: VariableType,
}

fn default_variable_type() -> VariableType {
    VariableType::String
}

/// Types of variable values.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum VariableType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

/// Default model settings of a template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelDefaults {
    /// Provider registered in the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub provider: Option<String>,

    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,

    /// Sampling temperature, 0 to 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f64>,

    /// Most tokens the model may produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_tokens: Option<i32>,
}

/// Observed state of a PromptTemplate.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Valid and Synced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Version of the content; increments each time the content changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,

    /// SHA-256 of the content the version was given for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,

    /// Where the template fails to parse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ParseError>,
}

/// A parse error in a template.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParseError {
    /// Which template: `template` or `messages[N]`.
    pub location: String,
    /// Line, from 1.
    pub line: i64,
    /// Column, from 1.
    pub column: i64,
    /// What is wrong.
    pub message: String,
}
