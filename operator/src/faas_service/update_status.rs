//! The status of a FaasService: computed (purely) from what the reconcile did and observed,
//! written only when it says something new, with an Event when Ready or Degraded changes.

use faas_crds::conditions::{self, DEGRADED, PROGRESSING, READY};
use faas_crds::{FaasService, FaasServiceStatus};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::observe::Observed;
use super::validate::Invalid;
use super::{Context, Defaults, Error, Result, build};
use crate::kit::events::Transition;
use crate::kit::{self, Conflict, status::Conditions};

/// Reason of the conditions when a child's name is taken.
pub const CHILD_CONFLICT: &str = "ChildConflict";

/// What the reconcile did before the status is computed.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A reference does not resolve; nothing was changed.
    Invalid(Invalid),
    /// `spec.paused` is set; nothing was changed.
    Paused,
    /// The children match the spec.
    Applied,
    /// A child's name is taken by an object this FaasService does not control; nothing more
    /// was applied.
    Conflict(Conflict),
}

impl Conditions for FaasServiceStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// Computes the status, writes it when it changed and announces the transitions of Ready and
/// Degraded; returns whether the status says the rollout is still progressing.
pub async fn update_status(
    ctx: &Context,
    ns: &str,
    fs: &FaasService,
    outcome: &Outcome,
    observed: &Observed,
) -> Result<bool> {
    let next = compute(fs, &ctx.defaults, outcome, observed, Timestamp::now());
    let progressing = next
        .conditions
        .iter()
        .any(|c| c.type_ == PROGRESSING && c.status == "True");
    let previous = fs.status.clone().unwrap_or_default();
    let types = [READY, DEGRADED];
    kit::status::update_and_announce(
        &ctx.client,
        &ctx.recorder,
        ns,
        fs,
        &previous,
        &next,
        &types,
        severity,
    )
    .await
    .map_err(Error::UpdateStatus)?;
    Ok(progressing)
}

/// The Event type a condition change is announced with: a Warning when Ready turns false for a
/// reason other than starting up, or Degraded turns true; nothing when Degraded first appears
/// false, or Ready first appears as creating or starting, since there is nothing to tell.
pub fn severity(t: &Transition<'_>) -> Option<EventType> {
    let now = t.now;
    // A new service's first status says it is being created or starting: the Applied Event
    // has told that already, so a created FaasService costs two Events (Applied, Available).
    if now.type_ == READY
        && t.before.is_none()
        && matches!(now.reason.as_str(), "Creating" | "Starting")
    {
        return None;
    }
    let bad = (now.type_ == READY
        && now.status == "False"
        && now.reason != "Creating"
        && now.reason != "Starting")
        || (now.type_ == DEGRADED && now.status == "True");
    if bad {
        Some(EventType::Warning)
    } else if now.type_ == DEGRADED && t.before.is_none() {
        None
    } else {
        Some(EventType::Normal)
    }
}

/// Computes the status. Conditions whose status did not change keep their
/// `lastTransitionTime` from the current status.
pub fn compute(
    fs: &FaasService,
    defaults: &Defaults,
    outcome: &Outcome,
    observed: &Observed,
    now: Timestamp,
) -> FaasServiceStatus {
    let generation = fs.metadata.generation;
    let stamp = Stamp { generation, now };
    let namespace = fs.namespace().unwrap_or_default();
    let url = build::url(&fs.name_any(), &namespace, &defaults.cluster_domain);
    let rollout = Rollout::of(fs, observed);
    let next = match outcome {
        Outcome::Invalid(invalid) => invalid_conditions(&stamp, invalid),
        Outcome::Conflict(conflict) => conflict_conditions(&stamp, conflict),
        Outcome::Paused | Outcome::Applied => vec![
            progressing(&stamp, outcome, &rollout),
            degraded(&stamp, &rollout),
            ready(&stamp, &rollout, &url),
        ],
    };
    let mut conditions = fs.status.clone().unwrap_or_default().conditions;
    for c in next {
        conditions::set(&mut conditions, c);
    }
    let dep = rollout.deployment;
    let image = dep
        .and_then(|d| d.spec.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone());
    FaasServiceStatus {
        observed_generation: generation,
        conditions,
        replicas: Some(if dep.is_some() { rollout.wanted } else { 0 }),
        ready_replicas: Some(rollout.ready),
        selector: Some(build::selector_string(fs)),
        image,
        url: Some(url),
        external_url: build::external_url(fs),
    }
}

/// Makes conditions for the generation this reconcile saw, at the time it ran.
struct Stamp {
    generation: Option<i64>,
    now: Timestamp,
}

impl Stamp {
    fn cond(&self, type_: &str, status: bool, reason: &str, message: String) -> Condition {
        conditions::new(type_, status, reason, message, self.generation, self.now)
    }
}

/// Where the Deployment's rollout stands.
struct Rollout<'a> {
    deployment: Option<&'a Deployment>,
    status: DeploymentStatus,
    wanted: i32,
    ready: i32,
    available: i32,
    updated: i32,
    failing: Vec<String>,
}

impl<'a> Rollout<'a> {
    fn of(fs: &FaasService, observed: &'a Observed) -> Self {
        let deployment = observed.deployment.as_ref();
        let status = deployment
            .and_then(|d| d.status.clone())
            .unwrap_or_default();
        // Under an autoscaler the Deployment starts at one replica until the HPA raises it to
        // minReplicas: the rollout is not complete before that.
        let floor = fs.spec.autoscaling.as_ref().map_or(0, |a| a.min_replicas);
        let wanted = deployment
            .and_then(|d| d.spec.replicas)
            .unwrap_or_else(|| build::wanted_replicas(fs))
            .max(floor);
        Self {
            deployment,
            wanted,
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            failing: observed.failing_pods(),
            status,
        }
    }

    /// Every wanted replica runs the current template and is available, and no old pod is left.
    fn done(&self) -> bool {
        let current = self
            .deployment
            .is_some_and(|d| self.status.observed_generation >= d.metadata.generation);
        let old_pods = self.status.replicas.unwrap_or(0) > self.updated;
        current && self.updated >= self.wanted && self.available >= self.wanted && !old_pods
    }

    /// The Deployment's condition of the given type.
    fn condition(&self, type_: &str) -> Option<DeploymentCondition> {
        self.status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some(type_))
            .cloned()
    }
}

fn invalid_conditions(stamp: &Stamp, invalid: &Invalid) -> Vec<Condition> {
    let hold = "changes are on hold until the spec or the referenced objects are fixed";
    vec![
        stamp.cond(READY, false, invalid.reason, invalid.message.clone()),
        stamp.cond(PROGRESSING, false, invalid.reason, hold.into()),
        stamp.cond(DEGRADED, true, invalid.reason, invalid.message.clone()),
    ]
}

fn conflict_conditions(stamp: &Stamp, conflict: &Conflict) -> Vec<Condition> {
    let message = conflict.to_string();
    let hold = format!(
        "changes are on hold until the {} {} is deleted or renamed",
        conflict.kind, conflict.name
    );
    vec![
        stamp.cond(READY, false, CHILD_CONFLICT, message.clone()),
        stamp.cond(PROGRESSING, false, CHILD_CONFLICT, hold),
        stamp.cond(DEGRADED, true, CHILD_CONFLICT, message),
    ]
}

fn progressing(stamp: &Stamp, outcome: &Outcome, r: &Rollout<'_>) -> Condition {
    let (wanted, updated, available) = (r.wanted, r.updated, r.available);
    if matches!(outcome, Outcome::Paused) {
        let message = "spec.paused is set: the generated objects are not changed";
        stamp.cond(PROGRESSING, false, "Paused", message.into())
    } else if r.deployment.is_none() {
        stamp.cond(
            PROGRESSING,
            true,
            "Creating",
            "creating the Deployment".into(),
        )
    } else if r.done() {
        let message = format!("{wanted} replica(s) up to date and available");
        stamp.cond(PROGRESSING, false, "RolloutComplete", message)
    } else {
        let message = format!("{updated} of {wanted} replica(s) updated, {available} available");
        stamp.cond(PROGRESSING, true, "RollingOut", message)
    }
}

fn degraded(stamp: &Stamp, r: &Rollout<'_>) -> Condition {
    let stuck = r
        .condition("Progressing")
        .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    let replica_failure = r
        .condition("ReplicaFailure")
        .filter(|c| c.status.as_deref() == Some("True"));
    if let Some(first) = r.failing.first() {
        let more = match r.failing.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        stamp.cond(DEGRADED, true, "PodsFailing", format!("{first}{more}"))
    } else if let Some(c) = replica_failure {
        let message = c.message.unwrap_or_else(|| "pods cannot be created".into());
        stamp.cond(DEGRADED, true, "ReplicaFailure", message)
    } else if let Some(c) = stuck {
        let message = c
            .message
            .unwrap_or_else(|| "the rollout exceeded its deadline".into());
        stamp.cond(DEGRADED, true, "RolloutStuck", message)
    } else {
        stamp.cond(DEGRADED, false, "AsExpected", "no failing pods".into())
    }
}

fn ready(stamp: &Stamp, r: &Rollout<'_>, url: &str) -> Condition {
    let (wanted, ready) = (r.wanted, r.ready);
    if r.deployment.is_none() {
        let message = "the Deployment does not exist yet";
        stamp.cond(READY, false, "Creating", message.into())
    } else if wanted == 0 {
        let message = "replicas is 0: nothing serves requests";
        stamp.cond(READY, false, "ScaledToZero", message.into())
    } else if r.available >= 1 {
        let message = format!("{ready} of {wanted} replica(s) ready, serving at {url}");
        stamp.cond(READY, true, "Available", message)
    } else if let Some(first) = r.failing.first() {
        let message = format!("no replica is ready: {first}");
        stamp.cond(READY, false, "PodsFailing", message)
    } else {
        let message = format!("0 of {wanted} replica(s) ready yet");
        stamp.cond(READY, false, "Starting", message)
    }
}
