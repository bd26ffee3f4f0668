//! Pure validation of an Agent: the definition as the agent component checks it
//! ([`faas_model::agent::Definition::validate`], through the crds conversion), the tenant,
//! and every reference against what [`dereference`](super::dereference) found.

use std::collections::BTreeMap;

use faas_crds::agent::ToolType;
use faas_crds::{Agent, Component, SecretKeyRef};
use faas_model::agent::Definition;
use kube::ResourceExt;

use crate::kit::tenant;
use crate::kit::text::shorten;

/// Whether an object was found.
#[derive(Clone, Debug, PartialEq)]
pub enum Found<T> {
    Present(T),
    Missing,
}

/// What is known about the referenced PromptTemplate.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub deleting: bool,
    pub tenant: String,
    /// The version it published, from its status.
    pub version: Option<i64>,
    pub ready: bool,
}

/// What is known about the serving FaasService.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub component: Component,
    /// Its in-cluster URL, from its status.
    pub url: Option<String>,
    pub ready: bool,
}

/// What the controller found about the objects an Agent references.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    /// `None` without promptTemplateRef (or with a name no object can have).
    pub template: Option<Found<Template>>,
    pub service: Found<Service>,
    /// Secrets of the tool headers, by name: their key names.
    pub secrets: BTreeMap<String, Found<Vec<String>>>,
    /// Agents called as tools, by name: their tenants.
    pub agents: BTreeMap<String, Found<String>>,
}

/// An Agent whose definition is valid and whose references all resolve.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    pub tenant: String,
    pub definition: Definition,
    /// The PromptTemplate version in use, when promptTemplateRef is set.
    pub template_version: Option<i64>,
    /// In-cluster URL of the serving FaasService.
    pub service_url: Option<String>,
    /// Whether the serving FaasService is Ready.
    pub service_ready: bool,
}

/// What stops an Agent from being published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The spec itself: the agent component would refuse it, or the tenant is unusable.
    Spec {
        reason: &'static str,
        message: String,
    },
    /// References that do not resolve; the first one's reason, every one in the message.
    References {
        reason: &'static str,
        message: String,
    },
}

impl Invalid {
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Spec { reason, .. } | Invalid::References { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Invalid::Spec { message, .. } | Invalid::References { message, .. } => message,
        }
    }
}

/// Problems named in one message; the rest are counted.
const SHOWN: usize = 5;

/// The tenant of an Agent: spec.tenant, else the namespace.
pub fn tenant(agent: &Agent) -> String {
    tenant::of(agent.spec.tenant.as_deref(), agent)
}

/// Whether `s` can name a namespaced object (a DNS subdomain): anything else is never looked
/// up, so a reference such as `other-namespace/secret` cannot reach another namespace.
pub fn is_object_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether `s` can be a key of a Secret, and a file name of its mounted volume: letters,
/// digits, '-', '_' and '.', never `.` nor a name starting with `..` (the volume's own
/// bookkeeping). The agent component reads a tool's Secret only under such a key.
pub fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && !s.starts_with("..")
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The Secret keys the tool headers name, with where each is named.
pub fn secret_refs(agent: &Agent) -> Vec<(String, &SecretKeyRef)> {
    agent
        .spec
        .tools
        .iter()
        .enumerate()
        .flat_map(|(i, tool)| {
            tool.http.iter().flat_map(move |http| {
                http.headers.iter().enumerate().filter_map(move |(j, h)| {
                    h.secret_key_ref
                        .as_ref()
                        .map(|s| (format!("spec.tools[{i}].http.headers[{j}]"), s))
                })
            })
        })
        .collect()
}

/// Names of the Agents called as tools.
pub fn tool_agents(agent: &Agent) -> Vec<String> {
    agent
        .spec
        .tools
        .iter()
        .filter(|t| t.type_ == ToolType::Agent)
        .filter_map(|t| t.agent.as_ref().map(|a| a.name.clone()))
        .collect()
}

/// Checks an Agent against what was found.
pub fn validate(agent: &Agent, resolved: &Resolved) -> Result<Validated, Invalid> {
    let tenant = tenant(agent);
    if !tenant::is_valid(&tenant) {
        return Err(Invalid::Spec {
            reason: "InvalidTenant",
            message: tenant::problem(&tenant),
        });
    }
    let definition = Definition::from(&agent.spec);
    if let Err(problems) = definition.validate() {
        let shown: Vec<String> = problems
            .iter()
            .take(SHOWN)
            .map(|p| shorten(&format!("spec.{p}"), 300))
            .collect();
        return Err(Invalid::Spec {
            reason: "InvalidDefinition",
            message: with_more(shown, problems.len()),
        });
    }
    let ns = agent.namespace().unwrap_or_default();
    let mut missing: Vec<(&'static str, String)> = Vec::new();
    let template_version = check_template(agent, resolved, &tenant, &mut missing);
    let service = check_service(agent, resolved, &ns, &mut missing);
    check_secrets(agent, resolved, &ns, &mut missing);
    check_agents(agent, resolved, &ns, &tenant, &mut missing);
    if let Some((reason, _)) = missing.first() {
        let reason = *reason;
        let count = missing.len();
        let shown = missing.into_iter().take(SHOWN).map(|(_, m)| m).collect();
        return Err(Invalid::References {
            reason,
            message: with_more(shown, count),
        });
    }
    let service = service.expect("a resolved service");
    Ok(Validated {
        tenant,
        definition,
        template_version,
        service_url: service.url.clone(),
        service_ready: service.ready,
    })
}

fn check_template(
    agent: &Agent,
    resolved: &Resolved,
    tenant: &str,
    missing: &mut Vec<(&'static str, String)>,
) -> Option<i64> {
    let r = agent.spec.prompt_template_ref.as_ref()?;
    let name = shorten(&r.name, 80);
    match &resolved.template {
        None => missing.push((
            "InvalidReference",
            format!("spec.promptTemplateRef.name {name:?} cannot name a PromptTemplate"),
        )),
        Some(Found::Missing) => missing.push((
            "PromptTemplateNotFound",
            format!("PromptTemplate {name} does not exist in this namespace; create it or change spec.promptTemplateRef"),
        )),
        Some(Found::Present(t)) if t.deleting => missing.push((
            "PromptTemplateDeleting",
            format!("PromptTemplate {name} is being deleted; change spec.promptTemplateRef"),
        )),
        Some(Found::Present(t)) if t.tenant != tenant => missing.push((
            "PromptTemplateOtherTenant",
            format!("PromptTemplate {name} belongs to tenant {}, this Agent to tenant {tenant}", shorten(&t.tenant, 80)),
        )),
        Some(Found::Present(Template { version: None, .. })) => missing.push((
            "PromptTemplateNotReady",
            format!("PromptTemplate {name} has no published version yet; see its status"),
        )),
        Some(Found::Present(t)) => return t.version,
    }
    None
}

fn check_service<'a>(
    agent: &Agent,
    resolved: &'a Resolved,
    ns: &str,
    missing: &mut Vec<(&'static str, String)>,
) -> Option<&'a Service> {
    let name = shorten(&agent.spec.service_ref.name, 80);
    match &resolved.service {
        Found::Missing => missing.push((
            "ServiceNotFound",
            format!("spec.serviceRef names FaasService {ns}/{name}, which does not exist; create a FaasService with component agent"),
        )),
        Found::Present(s) if s.component != Component::Agent => missing.push((
            "ServiceNotAgent",
            format!(
                "spec.serviceRef names FaasService {ns}/{name}, whose component is {}, not agent",
                s.component.as_str()
            ),
        )),
        Found::Present(s) => return Some(s),
    }
    None
}

fn check_secrets(
    agent: &Agent,
    resolved: &Resolved,
    ns: &str,
    missing: &mut Vec<(&'static str, String)>,
) {
    for (at, s) in secret_refs(agent) {
        let name = shorten(&s.name, 80);
        let key = shorten(&s.key, 80);
        if !is_object_name(&s.name) {
            missing.push((
                "InvalidReference",
                format!("{at}.secretKeyRef.name {name:?} is not a Secret name of this namespace"),
            ));
            continue;
        }
        match resolved.secrets.get(&s.name) {
            Some(Found::Present(keys)) if keys.contains(&s.key) => {}
            Some(Found::Present(_)) => missing.push((
                "SecretKeyNotFound",
                format!("Secret {ns}/{name} has no key {key:?}, named by {at}.secretKeyRef"),
            )),
            _ => missing.push((
                "SecretNotFound",
                format!("Secret {ns}/{name} does not exist; it is named by {at}.secretKeyRef"),
            )),
        }
    }
}

fn check_agents(
    agent: &Agent,
    resolved: &Resolved,
    ns: &str,
    tenant: &str,
    missing: &mut Vec<(&'static str, String)>,
) {
    for name in tool_agents(agent) {
        let shown = shorten(&name, 80);
        if name == agent.name_any() {
            missing.push((
                "InvalidReference",
                format!(
                    "a tool calls this Agent itself ({shown}); an agent cannot be its own tool"
                ),
            ));
            continue;
        }
        match resolved.agents.get(&name) {
            Some(Found::Present(t)) if t == tenant => {}
            Some(Found::Present(t)) => missing.push((
                "AgentOtherTenant",
                format!(
                    "the tool Agent {shown} belongs to tenant {}, this Agent to tenant {tenant}",
                    shorten(t, 80)
                ),
            )),
            _ => missing.push((
                "AgentNotFound",
                format!("a tool calls Agent {ns}/{shown}, which does not exist"),
            )),
        }
    }
}

fn with_more(shown: Vec<String>, total: usize) -> String {
    let more = match total.saturating_sub(shown.len()) {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    };
    format!("{}{more}", shown.join("; "))
}
