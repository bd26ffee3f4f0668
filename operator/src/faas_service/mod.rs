//! The FaasService controller.
//!
//! Each reconcile runs the same steps, one file each: [`dereference`] what the spec references
//! → [`validate`] (pure) → [`build`] the desired children (pure) → [`apply`] them, skipping
//! those already up to date, refusing names other objects hold, and deleting those no longer
//! wanted → [`observe`] the Deployment
//! and its pods → [`update_status`], written only when it changed. [`controller`] sets up the
//! watches; [`error`] names what can fail.

pub mod apply;
pub mod build;
pub mod controller;
pub mod dereference;
pub mod error;
pub mod observe;
pub mod update_status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use faas_crds::FaasService;
use faas_crds::faas_service::Backend;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::instrument;

pub use controller::{Context, error_policy, run};
pub use error::{Error, Result};
use update_status::Outcome;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "faasservice";
/// How often a FaasService with an unresolved reference is checked again. Secrets are not
/// watched (the operator may only read the ones it is told about), so this is how a Secret
/// created later is noticed; a change of the FaasService itself is noticed at once.
pub const INVALID_RECHECK: Duration = Duration::from_secs(120);
/// How soon a FaasService whose rollout is under way is reconciled again without an event.
pub const PROGRESS_RECHECK: Duration = Duration::from_secs(30);
/// How often a healthy FaasService is reconciled even when nothing happens.
pub const RESYNC: Duration = Duration::from_secs(600);

/// Defaults the operator applies to every generated service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub runtime_image: String,
    pub database_secret: String,
    pub cache_secret: String,
    pub nats_secret: String,
    /// Secret with the HS256 key (`jwt-hs256-secret`) services use when spec.auth is unset.
    pub auth_secret: String,
    pub cluster_domain: String,
}

impl Defaults {
    /// The default Secret for a backing service.
    pub fn secret_for(&self, backend: Backend) -> &str {
        match backend {
            Backend::Database => &self.database_secret,
            Backend::Cache => &self.cache_secret,
            Backend::Nats => &self.nats_secret,
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            runtime_image: "motadata/faas-runtime:0.1.0".into(),
            database_secret: "faas-database".into(),
            cache_secret: "faas-cache".into(),
            nats_secret: "faas-nats".into(),
            auth_secret: "faas-auth".into(),
            cluster_domain: "cluster.local".into(),
        }
    }
}

/// Reconciles one FaasService.
#[instrument(skip_all, fields(namespace = fs.namespace().unwrap_or_default(), name = fs.name_any()))]
pub async fn reconcile(fs: Arc<FaasService>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = fs
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(fs.name_any()))?;
    if fs.metadata.deletion_timestamp.is_some() {
        // The garbage collector is removing the children; applying them again would fight it.
        return Ok(Action::await_change());
    }

    let resolved = dereference::dereference(&ctx.client, &ns, &fs, &ctx.defaults).await?;
    let (outcome, deployment) = match validate::validate(&fs, &ctx.defaults, &resolved) {
        Err(invalid) => (Outcome::Invalid(invalid), None),
        Ok(_) if fs.spec.paused => (Outcome::Paused, None),
        Ok(valid) => {
            let desired = build::children(&fs, &valid, &ctx.defaults);
            match apply::apply(&ctx, &ns, &fs, desired).await {
                Ok(deployment) => (Outcome::Applied, Some(deployment)),
                Err(Error::ChildConflict(conflict)) => (Outcome::Conflict(conflict), None),
                Err(e) => return Err(e),
            }
        }
    };
    let observed = observe::observe(&ctx.client, &ns, &fs, deployment).await?;
    let progressing = match update_status::update_status(&ctx, &ns, &fs, &outcome, &observed).await
    {
        // Deleted while this reconcile ran: there is nothing left to report to, and its
        // children, if this reconcile made any, go with it (their owner is gone).
        Err(Error::UpdateStatus(kube::Error::Api(s))) if s.code == 404 => {
            tracing::debug!("deleted while it was reconciled");
            return Ok(Action::await_change());
        }
        result => result?,
    };

    Ok(match outcome {
        Outcome::Invalid(_) => {
            ctx.backoff.succeeded(&fs);
            Action::requeue(INVALID_RECHECK)
        }
        // The object in the way is not watched (it is not ours): look again with backoff, so
        // its removal is noticed soon and a lasting conflict costs ever fewer requests.
        Outcome::Conflict(_) => Action::requeue(ctx.backoff.failed(&fs)),
        // A rollout under way is looked at again soon even if no watch event comes: after an
        // API server restart, watches may resume late, and the status must not wait for them.
        Outcome::Applied if progressing => {
            ctx.backoff.succeeded(&fs);
            Action::requeue(PROGRESS_RECHECK)
        }
        Outcome::Paused | Outcome::Applied => {
            ctx.backoff.succeeded(&fs);
            Action::requeue(RESYNC)
        }
    })
}
