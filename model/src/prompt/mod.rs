//! The content of a prompt template — what a PromptTemplate resource declares and what the
//! prompt component stores, versions and renders — with the checks a version must pass
//! before it is stored ([`Content::validate`]) and the hash that tells versions apart
//! ([`Content::content_hash`]).
//!
//! Templates use Jinja syntax as minijinja reads it. Parsing a template is only safe once
//! [`structure::check`] has passed: minijinja's parser recurses once per link of a chain
//! and would overflow the stack on a hostile template; [`Content::validate`] runs that check
//! before it parses.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub mod structure;

#[cfg(test)]
mod tests;

/// Chat messages of one template.
pub const MAX_MESSAGES: usize = 64;
/// Declared variables of one template.
pub const MAX_VARIABLES: usize = 128;
/// Characters of a description (of the template or of a variable).
pub const MAX_DESCRIPTION: usize = 2000;
/// Characters of a variable name.
pub const MAX_VARIABLE_NAME: usize = 64;
/// Characters of one template source.
pub const MAX_TEMPLATE_CHARS: usize = 256 * 1024;
/// Serialized size of a variable's default and of the model defaults.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Who speaks a chat message.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    ToSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    /// Every role.
    pub const ALL: &'static [Role] = <Role as strum::VariantArray>::VARIANTS;

    /// The name of the role in chat messages.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The JSON type a variable's value must have.
#[derive(
    Serialize,
    Deserialize,
    JsonSchema,
    ToSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum VariableType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

impl VariableType {
    /// Every type.
    pub const ALL: &'static [VariableType] = <VariableType as strum::VariantArray>::VARIANTS;

    /// The name of the type, as JSON Schema spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether `v` is a value of this type. An integer is a number without a fraction
    /// (`3`, not `3.0`); every integer is also a number.
    pub fn matches(self, v: &Value) -> bool {
        match self {
            VariableType::String => v.is_string(),
            VariableType::Number => v.is_number(),
            VariableType::Integer => v.is_i64() || v.is_u64(),
            VariableType::Boolean => v.is_boolean(),
            VariableType::Array => v.is_array(),
            VariableType::Object => v.is_object(),
        }
    }
}

/// A variable a template uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Letters, digits and '_', not starting with a digit; at most 64.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z_][A-Za-z0-9_]*$")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        max_length = 2000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub description: Option<String>,
    /// Required unless a default is given; default true.
    #[serde(default = "yes")]
    pub required: bool,
    /// Any JSON value (at most 64 KiB), of the declared type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// string, number, integer, boolean, array or object; any when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<VariableType>,
}

fn yes() -> bool {
    true
}

impl Variable {
    /// Whether rendering fails when no value is given: a default makes a variable optional
    /// whatever `required` says.
    pub fn is_required(&self) -> bool {
        self.required && self.default.is_none()
    }
}

/// One chat message of a template.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessageTemplate {
    pub role: Role,
    #[schema(
        max_length = 262144,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub template: String,
}

/// The content of one version of a template: what its hash covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Content {
    #[serde(default)]
    pub description: Option<String>,
    /// A single template; exclusive with `messages`.
    #[serde(default)]
    pub template: Option<String>,
    /// Chat messages, each a template; exclusive with `template`.
    #[serde(default)]
    pub messages: Option<Vec<MessageTemplate>>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// A JSON object of model settings (such as `model`, `temperature`, `max_tokens`) a
    /// caller uses when it does not choose.
    #[serde(default)]
    pub model_defaults: Option<Value>,
}

/// A problem in one template source, where minijinja or [`structure::check`] found it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceError {
    /// Line, from 1, when known.
    pub line: Option<u32>,
    /// Column (in characters), from 1, when known.
    pub column: Option<u32>,
    /// What is wrong; it names the line when one is known.
    pub message: String,
}

impl SourceError {
    /// The position and description of a minijinja error in `src`.
    pub fn from_minijinja(e: &minijinja::Error, src: &str) -> SourceError {
        let (line, column) = match e.range().filter(|r| r.start <= src.len()) {
            Some(r) => {
                let (line, column) = position(src, r.start);
                (Some(line), Some(column))
            }
            None => (e.line().and_then(|l| u32::try_from(l).ok()), None),
        };
        SourceError {
            line,
            column,
            message: structure::describe(e),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

/// Line and column (in characters), both from 1, of the byte `offset` of `src`.
fn position(src: &str, offset: usize) -> (u32, u32) {
    let mut at = offset.min(src.len());
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(line), clamp(column))
}

/// A problem with the content, and where it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ValidationError {
    /// The field, as a path into the content: `template`, `messages[2].template`,
    /// `variables[0].default`, … Empty when the content as a whole is at fault.
    pub location: String,
    /// Line in the template source, from 1, for problems found in one.
    pub line: Option<u32>,
    /// Column in the template source, from 1, for problems found in one.
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl ValidationError {
    fn at(location: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError {
            location: location.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn in_source(location: &str, e: SourceError) -> ValidationError {
        ValidationError {
            location: location.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
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

/// Whether `n` can name a variable: letters, digits and '_', not starting with a digit,
/// at most [`MAX_VARIABLE_NAME`] characters.
pub fn is_variable_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_VARIABLE_NAME
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with(|c: char| c.is_ascii_digit())
}

/// A text a client fills: bounded, and without NUL or other control characters (newlines
/// and tabs allowed).
fn check_text(location: &str, s: &str, max: usize) -> Option<ValidationError> {
    if s.chars().count() > max {
        return Some(ValidationError::at(
            location,
            format!("at most {max} characters"),
        ));
    }
    let bad = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
    if s.chars().any(bad) {
        return Some(ValidationError::at(
            location,
            "control characters are not allowed",
        ));
    }
    None
}

/// JSON stored as jsonb: bounded, without NUL (jsonb cannot hold it) and with numbers that
/// read back as they were written (jsonb writes them out in full, and near the end of the
/// f64 range they parse as infinite).
fn check_json(location: &str, v: &Value, problems: &mut Vec<ValidationError>) {
    let len = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if len > MAX_JSON_BYTES {
        problems.push(ValidationError::at(
            location,
            format!("at most {MAX_JSON_BYTES} bytes of JSON"),
        ));
    }
    if !storable(v) {
        problems.push(ValidationError::at(
            location,
            "strings must not contain NUL and numbers must be within ±1e300",
        ));
    }
}

fn storable(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.contains('\0'),
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() <= 1e300),
        Value::Array(items) => items.iter().all(storable),
        Value::Object(m) => m.iter().all(|(k, v)| !k.contains('\0') && storable(v)),
        Value::Null | Value::Bool(_) => true,
    }
}

fn check_variable(i: usize, var: &Variable, problems: &mut Vec<ValidationError>) {
    if !is_variable_name(&var.name) {
        problems.push(ValidationError::at(
            format!("variables[{i}].name"),
            format!(
                "{:?} is not an identifier (letters, digits, '_', at most {MAX_VARIABLE_NAME})",
                var.name
            ),
        ));
    }
    if let Some(d) = &var.description {
        problems.extend(check_text(
            &format!("variables[{i}].description"),
            d,
            MAX_DESCRIPTION,
        ));
    }
    if let Some(d) = &var.default {
        let location = format!("variables[{i}].default");
        check_json(&location, d, problems);
        if let Some(k) = var.kind
            && !k.matches(d)
        {
            problems.push(ValidationError::at(location, format!("is not of type {k}")));
        }
    }
}

/// The environment templates are parsed in; its globals are names a template may use
/// without declaring them.
fn environment() -> minijinja::Environment<'static> {
    minijinja::Environment::new()
}

impl Content {
    /// The template sources, each with the location of its field (`template` or
    /// `messages[N].template`); empty unless exactly one of `template` and `messages` is
    /// given and `messages` has from 1 to [`MAX_MESSAGES`] entries.
    pub fn sources(&self) -> Vec<(String, &str)> {
        match (&self.template, &self.messages) {
            (Some(t), None) => vec![("template".into(), t.as_str())],
            (None, Some(ms)) if !ms.is_empty() && ms.len() <= MAX_MESSAGES => ms
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("messages[{i}].template"), m.template.as_str()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the content: sizes and characters of every text, the shape (exactly one of
    /// `template` and `messages`), variable names (identifiers, unique), defaults (storable,
    /// of the declared type), and that every template parses and uses only declared
    /// variables. Returns every problem found, in the order of the fields.
    pub fn validate(&self) -> Result<(), Vec<ValidationError>> {
        self.validate_with(|_, _| Ok(()))
    }

    /// [`validate`](Self::validate), with a further check of each template source, run
    /// once the source has passed [`structure::check`] and before it is parsed; it is given
    /// the location and the source, and an error becomes a problem at that location.
    pub fn validate_with(
        &self,
        mut check_source: impl FnMut(&str, &str) -> Result<(), String>,
    ) -> Result<(), Vec<ValidationError>> {
        let mut problems = Vec::new();
        if let Some(d) = &self.description {
            problems.extend(check_text("description", d, MAX_DESCRIPTION));
        }
        if let Some(m) = &self.model_defaults {
            if m.is_object() {
                check_json("model_defaults", m, &mut problems);
            } else {
                problems.push(ValidationError::at(
                    "model_defaults",
                    "must be a JSON object",
                ));
            }
        }
        match (&self.template, &self.messages) {
            (None, Some(ms)) if ms.len() > MAX_MESSAGES => problems.push(ValidationError::at(
                "messages",
                format!("at most {MAX_MESSAGES}"),
            )),
            (Some(_), None) => {}
            (None, Some(ms)) if !ms.is_empty() => {}
            _ => problems.push(ValidationError::at(
                "",
                "give exactly one of template, messages (a non-empty list)",
            )),
        }
        if self.variables.len() > MAX_VARIABLES {
            problems.push(ValidationError::at(
                "variables",
                format!("at most {MAX_VARIABLES}"),
            ));
        }
        let mut declared = HashSet::new();
        for (i, var) in self.variables.iter().enumerate() {
            check_variable(i, var, &mut problems);
            if !declared.insert(var.name.as_str()) {
                problems.push(ValidationError::at(
                    format!("variables[{i}].name"),
                    format!("{} is declared twice", var.name),
                ));
            }
        }
        let env = environment();
        let globals: HashSet<&str> = env.globals().map(|(name, _)| name).collect();
        for (location, src) in self.sources() {
            if let Some(p) = check_text(&location, src, MAX_TEMPLATE_CHARS) {
                problems.push(p);
                continue;
            }
            if let Err(e) = structure::check(src) {
                problems.push(ValidationError::in_source(&location, e));
                continue;
            }
            if let Err(message) = check_source(&location, src) {
                problems.push(ValidationError::at(&location, message));
                continue;
            }
            let tmpl = match env.template_from_str(src) {
                Ok(t) => t,
                Err(e) => {
                    let e = SourceError::from_minijinja(&e, src);
                    problems.push(ValidationError::in_source(&location, e));
                    continue;
                }
            };
            let undeclared: BTreeSet<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !declared.contains(v.as_str()) && !globals.contains(v.as_str()))
                .collect();
            if !undeclared.is_empty() {
                problems.push(ValidationError::at(
                    location,
                    format!(
                        "uses undeclared variables: {}",
                        undeclared.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Declared variables that no template uses, in the order of their declaration. A
    /// template that fails [`structure::check`] or does not parse counts as using every
    /// variable: what it uses cannot be known, and [`validate`](Self::validate) reports it.
    pub fn unused_variables(&self) -> Vec<String> {
        let env = environment();
        let mut used: HashSet<String> = HashSet::new();
        for (_, src) in self.sources() {
            if structure::check(src).is_err() {
                return Vec::new();
            }
            match env.template_from_str(src) {
                Ok(t) => used.extend(t.undeclared_variables(false)),
                Err(_) => return Vec::new(),
            }
        }
        self.variables
            .iter()
            .filter(|v| !used.contains(&v.name))
            .map(|v| v.name.clone())
            .collect()
    }

    /// SHA-256 (lower-case hex) of the content in a canonical JSON form: two versions have
    /// the same hash exactly when their content is the same. Stored with every version, so
    /// the form never changes.
    pub fn content_hash(&self) -> String {
        // serde_json's objects keep their keys sorted (its `preserve_order` feature would
        // change that, and the pinned hashes in the tests with it), which makes this form
        // canonical.
        let canonical = serde_json::json!({
            "template": self.template,
            "messages": self.messages,
            "variables": self.variables,
            "model_defaults": self.model_defaults,
            "description": self.description,
        });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}
