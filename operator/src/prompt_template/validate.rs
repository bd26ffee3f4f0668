//! Pure validation of a PromptTemplate: the checks of the prompt component itself
//! ([`faas_crds::PromptTemplateSpec::validate`], which runs faas-model's), the tenant and the
//! name the rows are stored under, and the declared variables no template uses.

use faas_crds::PromptTemplate;
use faas_crds::prompt_template::ParseError;
use faas_model::prompt::{Content, ValidationError};
use kube::ResourceExt;

use crate::kit::tenant;
use crate::kit::text::shorten;

/// Problems kept in `status.errors`; a hostile template cannot grow the status without bound.
pub const MAX_ERRORS: usize = 20;
/// Characters of one problem's message in the status.
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// A PromptTemplate the prompt component can serve.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// Tenant the rows belong to.
    pub tenant: String,
    /// The content, as the prompt component stores it.
    pub content: Content,
    /// Its hash, as the prompt component computes it.
    pub content_hash: String,
    /// Declared variables no template uses.
    pub unused: Vec<String>,
}

/// Why a PromptTemplate cannot be published; the user has to change it.
#[derive(Clone, Debug, PartialEq)]
pub struct Invalid {
    /// CamelCase reason of the Valid condition.
    pub reason: &'static str,
    /// What is wrong, in one message.
    pub message: String,
    /// Every problem, with its field and, in a template, line and column (bounded).
    pub errors: Vec<ParseError>,
}

/// The tenant of a PromptTemplate: spec.tenant, else the namespace.
pub fn tenant(pt: &PromptTemplate) -> String {
    tenant::of(pt.spec.tenant.as_deref(), pt)
}

/// Whether the prompt component serves a template under `name` (its path rule).
pub fn is_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Checks a PromptTemplate. CPU-bound on large templates: call it off the async workers.
pub fn validate(pt: &PromptTemplate) -> Result<Validated, Invalid> {
    let tenant = tenant(pt);
    if !tenant::is_valid(&tenant) {
        return Err(invalid_field(
            "InvalidTenant",
            "tenant",
            tenant::problem(&tenant),
        ));
    }
    let name = pt.name_any();
    if !is_template_name(&name) {
        return Err(invalid_field(
            "InvalidName",
            "",
            format!(
                "the prompt service cannot serve a template named {:?}",
                shorten(&name, 80)
            ),
        ));
    }
    if let Err(problems) = pt.spec.validate() {
        return Err(from_problems(&problems));
    }
    let content = pt.spec.content();
    Ok(Validated {
        tenant,
        content_hash: content.content_hash(),
        unused: content.unused_variables(),
        content,
    })
}

/// What a failed validation reports: a reason for the most fundamental kind of problem found,
/// a message naming the first ones, and every problem (bounded).
pub fn from_problems(problems: &[ValidationError]) -> Invalid {
    let kind = |p: &ValidationError| {
        if p.line.is_some() {
            0
        } else if p.message.starts_with("uses undeclared variables") {
            1
        } else if p.location.ends_with(".default") {
            2
        } else {
            3
        }
    };
    let reason = match problems.iter().map(kind).min() {
        Some(0) => "TemplateSyntaxError",
        Some(1) => "UndeclaredVariables",
        Some(2) => "InvalidDefault",
        _ => "InvalidContent",
    };
    let errors: Vec<ParseError> = problems
        .iter()
        .take(MAX_ERRORS)
        .map(|p| {
            let mut e = ParseError::from(p);
            e.location = shorten(&e.location, 256);
            e.message = shorten(&e.message, MAX_ERROR_MESSAGE);
            e
        })
        .collect();
    let shown: Vec<String> = errors.iter().take(3).map(describe).collect();
    let more = match problems.len() {
        n if n > 3 => format!(" (and {} more in status.errors)", n - 3),
        _ => String::new(),
    };
    Invalid {
        reason,
        message: format!("{}{more}", shown.join("; ")),
        errors,
    }
}

fn describe(e: &ParseError) -> String {
    let at = match (e.location.as_str(), e.line, e.column) {
        ("", _, _) => String::new(),
        (l, Some(line), Some(col)) => format!("spec.{l} (line {line}, column {col}): "),
        (l, _, _) => format!("spec.{l}: "),
    };
    format!("{at}{}", e.message)
}

fn invalid_field(reason: &'static str, location: &str, message: String) -> Invalid {
    Invalid {
        reason,
        errors: vec![ParseError {
            location: location.into(),
            line: None,
            column: None,
            message: message.clone(),
        }],
        message,
    }
}
