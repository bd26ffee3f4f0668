//! The status of an Agent: computed (purely) from the validation and what publishing did,
//! written only when it says something new, with an Event when a condition changes.

use faas_crds::conditions::{self, READY, REFERENCES_RESOLVED, SYNCED};
use faas_crds::{Agent, AgentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use uuid::Uuid;

use super::validate::{Invalid, Validated};
use super::{Context, Error, Result};
use crate::kit::database::{self, Problem};
use crate::kit::events::Transition;
use crate::kit::{self, status::Conditions};

/// What happened to the row.
#[derive(Clone, Debug, PartialEq)]
pub enum Sync {
    /// The spec or its references are not usable: nothing was written.
    Skipped,
    /// The operator has no database configured.
    NoDatabase,
    /// The database failed.
    Failed(Problem),
    /// An agent of that name was made through the agent API.
    NameTaken { tenant: String },
    /// The row holds the definition.
    Published {
        id: Uuid,
        revision: i32,
        endpoint: String,
    },
}

impl Conditions for AgentStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// Computes the status and writes it when it changed; then announces the transitions.
pub async fn update_status(
    ctx: &Context,
    ns: &str,
    agent: &Agent,
    validation: &Result<Validated, Invalid>,
    sync: &Sync,
) -> Result<()> {
    let next = compute(agent, validation, sync, Timestamp::now());
    let previous = agent.status.clone().unwrap_or_default();
    let types = [REFERENCES_RESOLVED, SYNCED, READY];
    kit::status::update_and_announce(
        &ctx.client,
        &ctx.recorder,
        ns,
        agent,
        &previous,
        &next,
        &types,
        severity,
    )
    .await
    .map_err(Error::UpdateStatus)
}

/// A Warning when ReferencesResolved or Synced turns false, Normal when Ready turns true.
pub fn severity(t: &Transition<'_>) -> Option<EventType> {
    match (t.now.type_.as_str(), t.now.status.as_str()) {
        (READY, "True") => Some(EventType::Normal),
        (READY, _) => None,
        (_, "False") => Some(EventType::Warning),
        _ => None,
    }
}

/// Computes the status. Conditions whose status did not change keep their
/// `lastTransitionTime`; the id, endpoint and template version keep telling what is
/// published when this reconcile published nothing.
pub fn compute(
    agent: &Agent,
    validation: &Result<Validated, Invalid>,
    sync: &Sync,
    now: Timestamp,
) -> AgentStatus {
    let generation = agent.metadata.generation;
    let cond = |type_: &str, status: bool, reason: &str, message: String| {
        conditions::new(type_, status, reason, message, generation, now)
    };
    let previous = agent.status.clone().unwrap_or_default();
    let resolved = match validation {
        Err(Invalid::References { reason, message }) => {
            cond(REFERENCES_RESOLVED, false, reason, message.clone())
        }
        // The references are not checked before the spec is usable.
        Err(Invalid::Spec { reason, .. }) => cond(
            REFERENCES_RESOLVED,
            false,
            reason,
            "not checked: the spec is invalid (see Synced)".into(),
        ),
        Ok(_) => cond(
            REFERENCES_RESOLVED,
            true,
            "Resolved",
            "every referenced object exists".into(),
        ),
    };
    let synced = match sync {
        Sync::Skipped => match validation {
            Err(Invalid::Spec { reason, message }) => cond(SYNCED, false, reason, message.clone()),
            _ => cond(
                SYNCED,
                false,
                "ReferencesUnresolved",
                "not published until every reference resolves; a published revision stays as it was".into(),
            ),
        },
        Sync::NoDatabase => cond(
            SYNCED,
            false,
            database::NO_DATABASE,
            database::NO_DATABASE_MESSAGE.into(),
        ),
        Sync::Failed(p) => cond(SYNCED, false, p.reason, p.message.clone()),
        Sync::NameTaken { tenant } => cond(
            SYNCED,
            false,
            "NameTaken",
            format!("tenant {tenant} already has an agent of this name, made through the agent API or by an Agent of another namespace; it is not overwritten: rename this Agent or delete that agent"),
        ),
        Sync::Published { revision, .. } => cond(
            SYNCED,
            true,
            "Published",
            format!("revision {revision} is stored"),
        ),
    };
    let ready = match (sync, validation) {
        (Sync::Published { endpoint, .. }, Ok(v)) if v.service_ready => {
            cond(READY, true, "Ready", format!("invoke at {endpoint}"))
        }
        (Sync::Published { .. }, Ok(_)) => cond(
            READY,
            false,
            "ServiceNotReady",
            format!(
                "stored; the FaasService {} that serves it is not Ready yet",
                agent.spec.service_ref.name
            ),
        ),
        _ => {
            let reason = if synced.status == "False" {
                synced.reason.clone()
            } else {
                resolved.reason.clone()
            };
            cond(READY, false, &reason, synced.message.clone())
        }
    };
    let ready = if resolved.status == "False" {
        cond(READY, false, &resolved.reason, resolved.message.clone())
    } else {
        ready
    };
    let mut conds = previous.conditions.clone();
    for c in [resolved, synced, ready] {
        conditions::set(&mut conds, c);
    }
    let (agent_id, endpoint, prompt_template_version) = match (sync, validation) {
        (Sync::Published { id, endpoint, .. }, Ok(v)) => (
            Some(id.to_string()),
            Some(endpoint.clone()),
            v.template_version,
        ),
        _ => (
            previous.agent_id.clone(),
            previous.endpoint.clone(),
            previous.prompt_template_version,
        ),
    };
    AgentStatus {
        observed_generation: generation,
        conditions: conds,
        agent_id,
        endpoint,
        prompt_template_version,
    }
}
