//! The Agent controller.
//!
//! Each reconcile runs the same steps, one file each: [`dereference`] what the spec
//! references → [`validate`] the definition and the references (pure) → [`build`] the row
//! and the endpoint (pure) → [`apply`] the row to the agent component's table, in a
//! transaction scoped to the tenant → [`update_status`], written only when it changed. On
//! deletion, a finalizer first runs [`cleanup`], which deletes the row. [`controller`] sets
//! up the watches; [`error`] names what can fail.

pub mod apply;
pub mod build;
pub mod cleanup;
pub mod controller;
pub mod dereference;
pub mod error;
pub mod update_status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use faas_crds::Agent;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, instrument};

pub use controller::{Context, error_policy, run};
pub use error::{Error, Result};
use update_status::Sync;
use validate::Invalid;

use crate::kit::database::Problem;
use crate::kit::finalizer;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "agent";
/// Finalizer that deletes the agent's row from Postgres before the resource goes.
pub const FINALIZER: &str = "faas.motadata.io/agent-row";
/// How often an agent is reconciled even when nothing happens: a row deleted behind the
/// operator's back comes back.
pub const RESYNC: Duration = Duration::from_secs(600);
/// How often an Agent with an unresolved reference is checked again. PromptTemplates,
/// FaasServices and Agents are watched, so their changes are noticed at once; this is how a
/// Secret created later is noticed.
pub const UNRESOLVED_RECHECK: Duration = Duration::from_secs(60);

/// Reconciles one Agent.
#[instrument(skip_all, fields(namespace = agent.namespace().unwrap_or_default(), name = agent.name_any()))]
pub async fn reconcile(agent: Arc<Agent>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = agent
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(agent.name_any()))?;
    if agent.metadata.deletion_timestamp.is_some() {
        return delete(&ctx, &ns, &agent).await;
    }
    if ctx.db.is_some() {
        // Before the row exists, so that no row outlives its resource.
        finalizer::add(&ctx.client, &ns, agent.as_ref(), FINALIZER)
            .await
            .map_err(Error::Finalizer)?;
    }
    let resolved = dereference::dereference(&ctx.client, &ns, &agent).await?;
    let validation = validate::validate(&agent, &resolved);
    let sync = match (&validation, &ctx.db) {
        (Err(_), _) => Sync::Skipped,
        (Ok(_), None) => Sync::NoDatabase,
        (Ok(valid), Some(pool)) => {
            let row = build::row(&agent, valid);
            match apply::apply(pool, &row).await {
                Ok(apply::Published::NameTaken) => Sync::NameTaken {
                    tenant: row.tenant.clone(),
                },
                Ok(apply::Published::Stored {
                    id,
                    revision,
                    changed,
                }) => {
                    if changed {
                        info!(revision, tenant = %row.tenant, "stored the agent");
                    }
                    Sync::Published {
                        id,
                        revision,
                        endpoint: build::endpoint(&agent, valid, &ctx.cluster_domain),
                    }
                }
                Err(e) => Sync::Failed(Problem::of(&e)),
            }
        }
    };
    update_status::update_status(&ctx, &ns, &agent, &validation, &sync).await?;
    let then = match &validation {
        Err(Invalid::References { .. }) => UNRESOLVED_RECHECK,
        _ => RESYNC,
    };
    Ok(ctx.backoff.requeue_after(
        &agent,
        &ctx.metrics,
        CONTROLLER,
        matches!(sync, Sync::Failed(_)),
        then,
    ))
}

/// Deletes the row of a deleted Agent, then lets the resource go.
async fn delete(ctx: &Context, ns: &str, agent: &Agent) -> Result<Action> {
    if !finalizer::has(agent, FINALIZER) {
        return Ok(Action::await_change());
    }
    if let Some(pool) = &ctx.db {
        let tenant = validate::tenant(agent);
        if let Err(e) =
            cleanup::delete(pool, &tenant, &agent.name_any(), &build::owner(agent)).await
        {
            let sync = Sync::Failed(Problem::of(&e));
            let validation = Err(Invalid::Spec {
                reason: "Deleting",
                message: "the Agent is being deleted".into(),
            });
            update_status::update_status(ctx, ns, agent, &validation, &sync).await?;
            return Ok(ctx.backoff.requeue_after(
                agent,
                &ctx.metrics,
                CONTROLLER,
                matches!(sync, Sync::Failed(_)),
                RESYNC,
            ));
        }
        info!(%tenant, "deleted the agent's row");
    }
    // Without a database there is no row this operator could reach: the resource may go.
    finalizer::remove(&ctx.client, ns, agent, FINALIZER)
        .await
        .map_err(Error::Finalizer)?;
    ctx.backoff.succeeded(agent);
    Ok(Action::await_change())
}
