//! The row an Agent is published as, and where it is invoked (pure).

use faas_crds::Agent;
use faas_model::agent::Definition;
use kube::ResourceExt;

use super::validate::Validated;

/// An agent in the agent component's table, `source = 'resource'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub tenant: String,
    pub name: String,
    /// The definition as camelCase JSON, canonical (keys sorted).
    pub definition: serde_json::Value,
    /// [`Definition::content_hash`], as the agent component computes it.
    pub content_hash: String,
    pub prompt_template_version: Option<i32>,
    /// Who the row says created it: the resource, as `agent:namespace/name`.
    pub created_by: String,
}

/// The row for a validated Agent.
pub fn row(agent: &Agent, valid: &Validated) -> Row {
    let name = agent.name_any();
    let definition = canonical(&valid.definition);
    Row {
        tenant: valid.tenant.clone(),
        created_by: owner(agent),
        name,
        content_hash: valid.definition.content_hash(),
        definition,
        prompt_template_version: valid.template_version.and_then(|v| i32::try_from(v).ok()),
    }
}

/// Who a row of the Agent says created it, `agent:namespace/name`: the rows the Agent owns,
/// which it alone updates and deletes.
pub fn owner(agent: &Agent) -> String {
    format!(
        "agent:{}/{}",
        agent.namespace().unwrap_or_default(),
        agent.name_any()
    )
}

/// The definition as JSON whose objects keep their keys sorted (serde_json's map without
/// `preserve_order`), so one definition always has one form and one hash.
pub fn canonical(definition: &Definition) -> serde_json::Value {
    serde_json::to_value(definition).expect("a definition serializes")
}

/// The URL that invokes the agent: the serving FaasService's in-cluster URL (from its status,
/// else built as the FaasService controller builds it) and the agent component's route.
pub fn endpoint(agent: &Agent, valid: &Validated, cluster_domain: &str) -> String {
    let service = &agent.spec.service_ref.name;
    let base = valid.service_url.clone().unwrap_or_else(|| {
        format!(
            "http://{service}.{}.svc.{cluster_domain}",
            agent.namespace().unwrap_or_default()
        )
    });
    format!(
        "{}/v1/agents/{}/invoke",
        base.trim_end_matches('/'),
        agent.name_any()
    )
}
