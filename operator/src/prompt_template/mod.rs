//! The PromptTemplate controller.
//!
//! Each reconcile runs the same steps, one file each: [`validate`] the content with the
//! prompt component's own checks (pure) → [`build`] the row (pure) → [`apply`] it to the
//! prompt component's table, a new version only when the content hash changed →
//! [`update_status`], written only when it changed. On deletion, a finalizer first runs
//! [`cleanup`]: the rows go, or stay retired while the Agents [`dereference`] finds still
//! reference the template. [`controller`] sets up the watches; [`error`] names what can fail.

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

use faas_crds::PromptTemplate;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, instrument};

pub use controller::{Context, error_policy, run};
pub use error::{Error, Result};
use update_status::Sync;
use validate::{Invalid, Validated};

use crate::kit::database::Problem;
use crate::kit::{events, finalizer};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "prompttemplate";
/// Finalizer that removes the template's rows from Postgres before the resource goes.
pub const FINALIZER: &str = "faas.motadata.io/prompt-template-rows";
/// How often a template is reconciled even when nothing happens: rows deleted behind the
/// operator's back come back.
pub const RESYNC: Duration = Duration::from_secs(600);
/// How often a deletion that waits for Agents is checked again, besides the Agent watch.
pub const WAITING_RECHECK: Duration = Duration::from_secs(60);

/// Reconciles one PromptTemplate.
#[instrument(skip_all, fields(namespace = pt.namespace().unwrap_or_default(), name = pt.name_any()))]
pub async fn reconcile(pt: Arc<PromptTemplate>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = pt
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(pt.name_any()))?;
    if pt.metadata.deletion_timestamp.is_some() {
        return delete(&ctx, &ns, &pt).await;
    }
    let Some(pool) = &ctx.db else {
        let validation = validate_off_workers(&pt).await;
        let sync = match validation {
            Err(_) => Sync::Skipped,
            Ok(_) => Sync::NoDatabase,
        };
        update_status::update_status(&ctx, &ns, &pt, &validation, &sync).await?;
        ctx.backoff.succeeded(&pt);
        return Ok(Action::requeue(RESYNC));
    };
    // Before any row exists, so that no row outlives its resource.
    finalizer::add(&ctx.client, &ns, pt.as_ref(), FINALIZER)
        .await
        .map_err(Error::Finalizer)?;

    let validation = validate_off_workers(&pt).await;
    let sync = match &validation {
        Err(_) => Sync::Skipped,
        Ok(valid) => {
            let row = build::row(&pt, valid);
            match apply::apply(pool, &row).await {
                Ok(apply::Published::NameTaken) => Sync::NameTaken {
                    tenant: row.tenant.clone(),
                },
                Ok(apply::Published::Version { version, created }) => {
                    if created {
                        info!(version, tenant = %row.tenant, "published a new version");
                    }
                    Sync::Published {
                        tenant: row.tenant.clone(),
                        version,
                    }
                }
                Err(e) => Sync::Failed(Problem::of(&e)),
            }
        }
    };
    update_status::update_status(&ctx, &ns, &pt, &validation, &sync).await?;
    Ok(ctx.backoff.requeue_after(
        &pt,
        &ctx.metrics,
        CONTROLLER,
        matches!(sync, Sync::Failed(_)),
        RESYNC,
    ))
}

/// What a deleted PromptTemplate needs before it can go: its rows deleted, or retired while
/// Agents still reference it.
async fn delete(ctx: &Context, ns: &str, pt: &PromptTemplate) -> Result<Action> {
    if !finalizer::has(pt, FINALIZER) {
        return Ok(Action::await_change());
    }
    let Some(pool) = &ctx.db else {
        // No database, so no rows this operator could reach: the resource may go.
        let note = "the operator has no database configured: rows of this template, if any, were left in place".to_string();
        events::publish(
            &ctx.recorder,
            pt,
            EventType::Warning,
            crate::kit::database::NO_DATABASE,
            "Delete",
            note,
        )
        .await;
        finalizer::remove(&ctx.client, ns, pt, FINALIZER)
            .await
            .map_err(Error::Finalizer)?;
        return Ok(Action::await_change());
    };
    let tenant = validate::tenant(pt);
    let name = pt.name_any();
    let agents = dereference::referencing_agents(&ctx.client, ns, pt).await?;
    // Kept in the status while the deletion waits.
    let validation = validate_off_workers(pt).await;
    if !agents.is_empty() {
        let sync = match cleanup::retire(pool, &tenant, &name, &build::owner(pt)).await {
            Ok(_) => Sync::Retired { agents },
            Err(e) => Sync::Failed(Problem::of(&e)),
        };
        update_status::update_status(ctx, ns, pt, &validation, &sync).await?;
        return Ok(ctx.backoff.requeue_after(
            pt,
            &ctx.metrics,
            CONTROLLER,
            matches!(sync, Sync::Failed(_)),
            WAITING_RECHECK,
        ));
    }
    match cleanup::delete(pool, &tenant, &name, &build::owner(pt)).await {
        Ok(rows) => {
            info!(rows, %tenant, "deleted the template's rows");
            finalizer::remove(&ctx.client, ns, pt, FINALIZER)
                .await
                .map_err(Error::Finalizer)?;
            ctx.backoff.succeeded(pt);
            Ok(Action::await_change())
        }
        Err(e) => {
            let sync = Sync::Failed(Problem::of(&e));
            update_status::update_status(ctx, ns, pt, &validation, &sync).await?;
            Ok(ctx.backoff.requeue_after(
                pt,
                &ctx.metrics,
                CONTROLLER,
                matches!(sync, Sync::Failed(_)),
                WAITING_RECHECK,
            ))
        }
    }
}

/// Validates on a blocking thread: a large template takes a while to parse. A panic of the
/// template engine is a template it cannot handle.
async fn validate_off_workers(pt: &PromptTemplate) -> Result<Validated, Invalid> {
    let pt = pt.clone();
    match tokio::task::spawn_blocking(move || validate::validate(&pt)).await {
        Ok(result) => result,
        Err(_) => Err(Invalid {
            reason: "TemplateSyntaxError",
            message: "the template engine cannot handle this template".into(),
            errors: Vec::new(),
        }),
    }
}
