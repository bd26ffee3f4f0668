//! Pure computation of a FaasService's status from what was observed.

use faas_crds::conditions::{self, DEGRADED, PROGRESSING, READY};
use faas_crds::{FaasService, FaasServiceStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::Defaults;
use super::build;
use super::validate::Invalid;
use crate::kit::{self, events::Transition};

/// What the reconcile did before the status is computed.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A reference does not resolve; nothing was changed.
    Invalid(Invalid),
    /// `spec.paused` is set; nothing was changed.
    Paused,
    /// The children match the spec.
    Applied,
}

/// The children's state the status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub deployment: Option<Deployment>,
    pub pods: Vec<Pod>,
}

/// Container waiting reasons that mean the pod will not become ready by itself.
const FAILING_WAIT_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why a pod is failing, if it is.
pub fn pod_failure(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        let why = status
            .message
            .clone()
            .or_else(|| status.reason.clone())
            .unwrap_or_default();
        return Some(
            format!("pod {name} failed: {why}")
                .trim_end_matches([' ', ':'])
                .to_string(),
        );
    }
    for cs in status.container_statuses.iter().flatten() {
        let state = cs.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if FAILING_WAIT_REASONS.contains(&reason) {
                let detail = waiting
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                return Some(format!(
                    "pod {name}: container {} is in {reason}{detail}",
                    cs.name
                ));
            }
        }
        if let Some(terminated) = state.and_then(|s| s.terminated.as_ref())
            && terminated.exit_code != 0
        {
            return Some(format!(
                "pod {name}: container {} exited with code {} ({} restarts)",
                cs.name, terminated.exit_code, cs.restart_count
            ));
        }
        if cs.restart_count > 0
            && !cs.ready
            && let Some(last) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
            && last.exit_code != 0
        {
            return Some(format!(
                "pod {name}: container {} keeps exiting with code {} ({} restarts)",
                cs.name, last.exit_code, cs.restart_count
            ));
        }
    }
    None
}

/// Computes the status. Conditions whose status did not change keep their
/// `lastTransitionTime` from `previous`.
pub fn compute(
    fs: &FaasService,
    defaults: &Defaults,
    outcome: &Outcome,
    observed: &Observed,
    now: Timestamp,
) -> FaasServiceStatus {
    let generation = fs.metadata.generation;
    let previous = fs.status.clone().unwrap_or_default();
    let namespace = fs.namespace().unwrap_or_default();
    let url = build::url(&fs.name_any(), &namespace, &defaults.cluster_domain);
    let cond = |t: &str, s: bool, reason: &str, message: String| {
        conditions::new(t, s, reason, message, generation, now)
    };

    let dep = observed.deployment.as_ref();
    let dep_spec_replicas = dep.and_then(|d| d.spec.replicas);
    let st = dep.and_then(|d| d.status.clone()).unwrap_or_default();
    // Under an autoscaler the Deployment starts at one replica until the HPA raises it to
    // minReplicas: the rollout is not complete before that.
    let floor = fs.spec.autoscaling.as_ref().map_or(0, |a| a.min_replicas);
    let wanted = dep_spec_replicas
        .unwrap_or_else(|| build::wanted_replicas(fs))
        .max(floor);
    let ready = st.ready_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let failing: Vec<String> = observed.pods.iter().filter_map(pod_failure).collect();

    let mut next = Vec::new();
    match outcome {
        Outcome::Invalid(invalid) => {
            next.push(cond(READY, false, invalid.reason, invalid.message.clone()));
            next.push(cond(
                PROGRESSING,
                false,
                invalid.reason,
                "changes are on hold until the spec or the referenced objects are fixed".into(),
            ));
            next.push(cond(
                DEGRADED,
                true,
                invalid.reason,
                invalid.message.clone(),
            ));
        }
        Outcome::Paused | Outcome::Applied => {
            let dep_current = dep.is_some_and(|d| st.observed_generation >= d.metadata.generation);
            let old_pods = st.replicas.unwrap_or(0) > updated;
            let rollout_done = dep_current && updated >= wanted && available >= wanted && !old_pods;
            let dep_condition = |t: &str| {
                st.conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_.as_deref() == Some(t))
                    .cloned()
            };

            next.push(if matches!(outcome, Outcome::Paused) {
                cond(
                    PROGRESSING,
                    false,
                    "Paused",
                    "spec.paused is set: the generated objects are not changed".into(),
                )
            } else if dep.is_none() {
                cond(
                    PROGRESSING,
                    true,
                    "Creating",
                    "creating the Deployment".into(),
                )
            } else if rollout_done {
                cond(
                    PROGRESSING,
                    false,
                    "RolloutComplete",
                    format!("{wanted} replica(s) up to date and available"),
                )
            } else {
                cond(
                    PROGRESSING,
                    true,
                    "RollingOut",
                    format!("{updated} of {wanted} replica(s) updated, {available} available"),
                )
            });

            let stuck = dep_condition("Progressing")
                .filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"));
            let replica_failure =
                dep_condition("ReplicaFailure").filter(|c| c.status.as_deref() == Some("True"));
            next.push(if let Some(first) = failing.first() {
                let more = if failing.len() > 1 {
                    format!(" (and {} more)", failing.len() - 1)
                } else {
                    String::new()
                };
                cond(DEGRADED, true, "PodsFailing", format!("{first}{more}"))
            } else if let Some(c) = replica_failure {
                cond(
                    DEGRADED,
                    true,
                    "ReplicaFailure",
                    c.message.unwrap_or_else(|| "pods cannot be created".into()),
                )
            } else if let Some(c) = stuck {
                cond(
                    DEGRADED,
                    true,
                    "RolloutStuck",
                    c.message
                        .unwrap_or_else(|| "the rollout exceeded its deadline".into()),
                )
            } else {
                cond(DEGRADED, false, "AsExpected", "no failing pods".into())
            });

            next.push(if dep.is_none() {
                cond(
                    READY,
                    false,
                    "Creating",
                    "the Deployment does not exist yet".into(),
                )
            } else if wanted == 0 {
                cond(
                    READY,
                    false,
                    "ScaledToZero",
                    "replicas is 0: nothing serves requests".into(),
                )
            } else if available >= 1 {
                cond(
                    READY,
                    true,
                    "Available",
                    format!("{ready} of {wanted} replica(s) ready, serving at {url}"),
                )
            } else if let Some(first) = failing.first() {
                cond(
                    READY,
                    false,
                    "PodsFailing",
                    format!("no replica is ready: {first}"),
                )
            } else {
                cond(
                    READY,
                    false,
                    "Starting",
                    format!("0 of {wanted} replica(s) ready yet"),
                )
            });
        }
    }

    let mut conditions = previous.conditions.clone();
    for c in next {
        conditions::set(&mut conditions, c);
    }
    let image = dep
        .and_then(|d| d.spec.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone());

    FaasServiceStatus {
        observed_generation: generation,
        conditions,
        replicas: Some(if dep.is_some() { wanted } else { 0 }),
        ready_replicas: Some(ready),
        selector: Some(build::selector_string(fs)),
        image,
        url: Some(url),
        external_url: build::external_url(fs),
    }
}

impl kit::status::Conditions for FaasServiceStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// The Event type a condition change is announced with: a Warning when Ready turns false for a
/// reason other than starting up, or Degraded turns true; nothing when Degraded first appears
/// false, since there is nothing to tell.
pub fn severity(t: &Transition<'_>) -> Option<EventType> {
    let now = t.now;
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
