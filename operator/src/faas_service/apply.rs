//! Applies the desired children with server-side apply, skipping those already up to date, and
//! deletes the optional children the spec no longer asks for.

use faas_crds::FaasService;
use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use tracing::info;

use super::build::Children;
use super::{Context, Error, Result};
use crate::kit::{self, Child, events};

/// Applies every child; returns the live Deployment. When something was out of date, a Normal
/// Event says what was updated. A child whose name another object holds stops the apply with
/// [`Error::ChildConflict`]; children applied before it stay (they are owned, and collected
/// with the FaasService).
pub async fn apply(
    ctx: &Context,
    ns: &str,
    fs: &FaasService,
    desired: Children,
) -> Result<Deployment> {
    let client = &ctx.client;
    let name = fs.name_any();
    // The pods' ServiceAccount and ConfigMap first, so the Deployment's pods never wait for
    // them; the other children do not depend on each other and are applied at once.
    let ((sa, _), (cm, _)) = futures::try_join!(
        ensure(client, ns, &desired.service_account),
        ensure(client, ns, &desired.config_map),
    )?;
    let ((deploy, deployment), (svc, _), hpa, ingress, pdb) = futures::try_join!(
        ensure(client, ns, &desired.deployment),
        ensure(client, ns, &desired.service),
        ensure_optional(client, ns, fs, &name, desired.hpa.as_ref()),
        ensure_optional(client, ns, fs, &name, desired.ingress.as_ref()),
        ensure_optional(client, ns, fs, &name, desired.pdb.as_ref()),
    )?;
    let changed: Vec<&str> = [
        (sa, ServiceAccount::KIND),
        (cm, ConfigMap::KIND),
        (deploy, Deployment::KIND),
        (svc, Service::KIND),
        (hpa, HorizontalPodAutoscaler::KIND),
        (ingress, Ingress::KIND),
        (pdb, PodDisruptionBudget::KIND),
    ]
    .into_iter()
    .filter_map(|(changed, kind)| changed.then_some(kind))
    .collect();
    if !changed.is_empty() {
        info!(changed = ?changed, "applied");
        let note = format!("updated {}", changed.join(", "));
        events::publish(
            &ctx.recorder,
            fs,
            EventType::Normal,
            "Applied",
            "Apply",
            note,
        )
        .await;
    }
    Ok(deployment)
}

/// Applies a child unless it is up to date; returns whether it applied, and the live object.
async fn ensure<K: Child>(client: &Client, ns: &str, desired: &K) -> Result<(bool, K)> {
    kit::ensure(client, ns, desired).await.map_err(|e| match e {
        kit::EnsureError::Conflict(conflict) => Error::ChildConflict(conflict),
        kit::EnsureError::Api(source) => Error::Apply {
            kind: K::kind(&()).into_owned(),
            source,
        },
    })
}

/// Applies an optional child, or deletes it (when this FaasService owns it) when it is no
/// longer wanted. Returns whether it changed anything.
async fn ensure_optional<K: Child>(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    name: &str,
    desired: Option<&K>,
) -> Result<bool> {
    match desired {
        Some(desired) => Ok(ensure(client, ns, desired).await?.0),
        None => kit::prune::<K>(client, ns, name, fs)
            .await
            .map_err(|source| Error::Prune {
                kind: K::kind(&()).into_owned(),
                source,
            }),
    }
}
