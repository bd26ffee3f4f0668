//! The status of a PromptTemplate: computed (purely) from the validation and what publishing
//! did, written only when it says something new, with an Event when a condition changes.

use faas_crds::conditions::{self, READY, SYNCED, VALID};
use faas_crds::{PromptTemplate, PromptTemplateStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;

use super::validate::{Invalid, Validated};
use super::{Context, Error, Result};
use crate::kit::database::{self, Problem};
use crate::kit::events::Transition;
use crate::kit::{self, status::Conditions};

/// What happened to the rows.
#[derive(Clone, Debug, PartialEq)]
pub enum Sync {
    /// The content is invalid: nothing was written, the last valid version stays served.
    Skipped,
    /// The operator has no database configured.
    NoDatabase,
    /// The database failed.
    Failed(Problem),
    /// A template of that name was made through the prompt API.
    NameTaken { tenant: String },
    /// The latest version holds the content.
    Published { tenant: String, version: i32 },
    /// The resource is being deleted, and these Agents still reference it: the rows are
    /// kept, retired, until they no longer do.
    Retired { agents: Vec<String> },
}

impl Conditions for PromptTemplateStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// Computes the status and writes it when it changed; then announces the transitions.
pub async fn update_status(
    ctx: &Context,
    ns: &str,
    pt: &PromptTemplate,
    validation: &Result<Validated, Invalid>,
    sync: &Sync,
) -> Result<()> {
    let next = compute(pt, validation, sync, Timestamp::now());
    let previous = pt.status.clone().unwrap_or_default();
    let types = [VALID, SYNCED, READY];
    kit::status::update_and_announce(
        &ctx.client,
        &ctx.recorder,
        ns,
        pt,
        &previous,
        &next,
        &types,
        severity,
    )
    .await
    .map_err(Error::UpdateStatus)
}

/// A Warning when a condition turns false, Normal otherwise.
pub fn severity(t: &Transition<'_>) -> Option<EventType> {
    // Ready repeats what Valid or Synced already said.
    if t.now.type_ == READY {
        return None;
    }
    Some(if t.now.status == "False" {
        EventType::Warning
    } else {
        EventType::Normal
    })
}

/// Computes the status. Conditions whose status did not change keep their
/// `lastTransitionTime`; `version` and `contentHash` keep telling what is published when
/// this reconcile published nothing.
pub fn compute(
    pt: &PromptTemplate,
    validation: &Result<Validated, Invalid>,
    sync: &Sync,
    now: Timestamp,
) -> PromptTemplateStatus {
    let generation = pt.metadata.generation;
    let cond = |type_: &str, status: bool, reason: &str, message: String| {
        conditions::new(type_, status, reason, message, generation, now)
    };
    let previous = pt.status.clone().unwrap_or_default();
    let valid = match validation {
        Err(invalid) => cond(VALID, false, invalid.reason, invalid.message.clone()),
        Ok(v) if !v.unused.is_empty() => cond(
            VALID,
            true,
            "UnusedVariables",
            format!(
                "the template parses; declared but not used: {}",
                v.unused.join(", ")
            ),
        ),
        Ok(_) => cond(
            VALID,
            true,
            "Valid",
            "the template parses and uses only declared variables".into(),
        ),
    };
    let (synced, ready) = match sync {
        Sync::Skipped => {
            let message = match previous.version {
                Some(v) => format!(
                    "not published: the content is invalid; version {v} stays served until it is fixed"
                ),
                None => "not published: the content is invalid".into(),
            };
            let reason = validation.as_ref().err().map_or("Invalid", |i| i.reason);
            (
                cond(SYNCED, false, "InvalidContent", message.clone()),
                cond(READY, false, reason, message),
            )
        }
        Sync::NoDatabase => {
            let m = database::NO_DATABASE_MESSAGE.to_string();
            (
                cond(SYNCED, false, database::NO_DATABASE, m.clone()),
                cond(READY, false, database::NO_DATABASE, m),
            )
        }
        Sync::Failed(p) => (
            cond(SYNCED, false, p.reason, p.message.clone()),
            cond(READY, false, p.reason, p.message.clone()),
        ),
        Sync::NameTaken { tenant } => {
            let m = format!(
                "tenant {tenant} already has a template of this name, made through the prompt API or by a PromptTemplate of another namespace; it is not overwritten: rename this PromptTemplate or delete that template"
            );
            (
                cond(SYNCED, false, "NameTaken", m.clone()),
                cond(READY, false, "NameTaken", m),
            )
        }
        Sync::Published { tenant, version } => {
            let m = format!("version {version} is served to tenant {tenant}");
            (
                cond(SYNCED, true, "Published", m.clone()),
                cond(READY, true, "Published", m),
            )
        }
        Sync::Retired { agents } => {
            let m = format!(
                "deletion waits: still referenced by Agent(s) {}; the template is retired (the prompt service answers 404) and its rows are deleted once no Agent references it",
                agents.join(", ")
            );
            (
                cond(SYNCED, true, "Retired", m.clone()),
                cond(READY, false, "InUse", m),
            )
        }
    };
    let mut conds = previous.conditions.clone();
    for c in [valid, synced, ready] {
        conditions::set(&mut conds, c);
    }
    let (version, content_hash) = match (sync, validation) {
        (Sync::Published { version, .. }, Ok(v)) => {
            (Some(i64::from(*version)), Some(v.content_hash.clone()))
        }
        _ => (previous.version, previous.content_hash.clone()),
    };
    PromptTemplateStatus {
        observed_generation: generation,
        conditions: conds,
        version,
        content_hash,
        errors: validation
            .as_ref()
            .err()
            .map(|i| i.errors.clone())
            .unwrap_or_default(),
    }
}
