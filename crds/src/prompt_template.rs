//! `PromptTemplate`: a versioned prompt served read-only by the prompt component.
//!
//! The content is the prompt component's: [`faas_model::prompt::Content`] is what a
//! PromptTemplate declares, and the conversion below is the one way from one to the other.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{any_value, conditions_schema};

use faas_model::prompt::{self, Content, ValidationError};
pub use faas_model::prompt::{Role, VariableType};

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
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the version is served by the prompt service"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.template) != has(self.messages)").message("set exactly one of spec.template and spec.messages"),
    // A PromptTemplate's rows are stored under its tenant: another tenant would leave them behind.
    validation = Rule::new("has(self.tenant) == has(oldSelf.tenant) && (!has(self.tenant) || self.tenant == oldSelf.tenant)").message("spec.tenant cannot be changed; delete and re-create the resource"),
)]
#[serde(rename_all = "camelCase")]
pub struct PromptTemplateSpec {
    /// What the template is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
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

    /// Tenant the template belongs to. Defaults to the namespace. Fixed once the
    /// PromptTemplate exists: to move it to another tenant, delete it and create it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("spec.tenant must be a lowercase name of letters, digits and '-'"))]
    pub tenant: Option<String>,
}

/// One chat message of a template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplate {
    /// Who speaks: system, developer, user, assistant or tool.
    pub role: Role,

    /// Content of the message, Jinja syntax.
    #[schemars(length(min = 1, max = 262144))]
    pub template: String,
}

/// A variable of the template.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Variable {
    /// Name used in the template: letters, digits and '_', not starting with a digit.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("spec.variables[].name must be an identifier: letters, digits and '_', not starting with a digit"))]
    pub name: String,

    /// What the variable holds, for people and for prompt generators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,

    /// Whether rendering fails when the variable is not given. Defaults to true unless a
    /// default is given; a variable with a default is never required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,

    /// Value used when the variable is not given: any YAML value of the variable's type,
    /// such as `100` for an integer, `true` for a boolean or `[a, b]` for an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub default: Option<serde_json::Value>,

    /// Type of the value: string, number, integer, boolean, array or object. Any value is
    /// accepted when the type is not given.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<VariableType>,
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

    /// Valid (the content parses and uses only declared variables), Synced (it is written to
    /// the platform's database) and Ready (the prompt service serves this version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Version of the content; increments each time the content changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,

    /// SHA-256 of the content the version was given for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,

    /// What is wrong with the content: templates that fail to parse, variables used but not
    /// declared, defaults of the wrong type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ParseError>,
}

/// A problem in the content of a template.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParseError {
    /// The field at fault, within spec: `template`, `messages[N].template`,
    /// `variables[N].default`, … Empty when the content as a whole is.
    pub location: String,
    /// Line in the template, from 1, for problems in a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<i64>,
    /// Column in the template, from 1, for problems in a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<i64>,
    /// What is wrong.
    pub message: String,
}

impl From<&ValidationError> for ParseError {
    fn from(e: &ValidationError) -> Self {
        ParseError {
            location: e.location.clone(),
            line: e.line.map(i64::from),
            column: e.column.map(i64::from),
            message: e.message.clone(),
        }
    }
}

impl From<&Variable> for prompt::Variable {
    /// A variable without `required` is required unless it has a default, as the prompt
    /// component reads it.
    fn from(v: &Variable) -> Self {
        prompt::Variable {
            name: v.name.clone(),
            description: v.description.clone(),
            required: v.required.unwrap_or(true),
            default: v.default.clone(),
            kind: v.type_,
        }
    }
}

impl From<&ModelDefaults> for serde_json::Value {
    /// The settings as a chat completion request of the gateway names them: `model` (as
    /// `provider/name` when a provider is given), `temperature` and `max_tokens`. A provider
    /// without a model name stays `provider`.
    fn from(m: &ModelDefaults) -> Self {
        let mut out = serde_json::Map::new();
        match (&m.provider, &m.name) {
            (Some(p), Some(n)) => {
                out.insert("model".into(), format!("{p}/{n}").into());
            }
            (None, Some(n)) => {
                out.insert("model".into(), n.clone().into());
            }
            (Some(p), None) => {
                out.insert("provider".into(), p.clone().into());
            }
            (None, None) => {}
        }
        if let Some(t) = m.temperature {
            out.insert("temperature".into(), t.into());
        }
        if let Some(n) = m.max_tokens {
            out.insert("max_tokens".into(), n.into());
        }
        serde_json::Value::Object(out)
    }
}

impl From<&PromptTemplateSpec> for Content {
    fn from(spec: &PromptTemplateSpec) -> Self {
        Content {
            description: spec.description.clone(),
            template: spec.template.clone(),
            messages: spec.messages.as_ref().map(|ms| {
                ms.iter()
                    .map(|m| prompt::MessageTemplate {
                        role: m.role,
                        template: m.template.clone(),
                    })
                    .collect()
            }),
            variables: spec.variables.iter().map(prompt::Variable::from).collect(),
            model_defaults: spec.model.as_ref().map(serde_json::Value::from),
        }
    }
}

impl PromptTemplateSpec {
    /// The content as the prompt component stores and renders it.
    pub fn content(&self) -> Content {
        Content::from(self)
    }

    /// Checks the spec: every check of [`Content::validate`], and what the API server cannot
    /// check because `default` has no fixed type: a variable explicitly `required: true`
    /// has no default. Locations are relative to `spec`.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        let mut problems = self.content().validate().err().unwrap_or_default();
        for (i, v) in self.variables.iter().enumerate() {
            if v.required == Some(true) && v.default.is_some() {
                problems.push(ValidationError {
                    location: format!("variables[{i}].required"),
                    line: None,
                    column: None,
                    message:
                        "a required variable cannot have a default: drop required or the default"
                            .into(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
