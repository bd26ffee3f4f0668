//! Reads the state of the children the status reports on: the Deployment and, while replicas
//! are not ready, its pods, and tells which pods are failing.

use faas_crds::FaasService;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::build;
use super::{Error, Result};
use crate::kit;

/// The children's state the status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub deployment: Option<Deployment>,
    pub pods: Vec<Pod>,
}

impl Observed {
    /// Why each failing pod fails.
    pub fn failing_pods(&self) -> Vec<String> {
        self.pods.iter().filter_map(pod_failure).collect()
    }
}

/// Reads what the status is computed from; `applied` is the Deployment as the apply just left
/// it, so it is not read again.
pub async fn observe(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    applied: Option<Deployment>,
) -> Result<Observed> {
    let deployment = match applied {
        Some(d) => Some(d),
        None => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            deployments
                .get_opt(&fs.name_any())
                .await
                .map_err(Error::Observe)?
        }
    }
    .filter(|d| kit::owned_by(d, fs));
    // Pods are only looked at to explain replicas that are not ready.
    let all_ready = deployment.as_ref().is_some_and(|d| {
        let wanted = d.spec.replicas.unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        st.ready_replicas.unwrap_or(0) >= wanted && st.replicas.unwrap_or(0) == wanted
    });
    let pods = if deployment.is_some() && !all_ready {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        pods.list(&ListParams::default().labels(&build::selector_string(fs)))
            .await
            .map_err(Error::Observe)?
            .items
    } else {
        Vec::new()
    };
    Ok(Observed { deployment, pods })
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
    status
        .container_statuses
        .iter()
        .flatten()
        .find_map(container_failure)
        .map(|why| format!("pod {name}: {why}"))
}

/// Why a container will not become ready by itself, if it will not.
fn container_failure(cs: &ContainerStatus) -> Option<String> {
    let state = cs.state.as_ref();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        if FAILING_WAIT_REASONS.contains(&reason) {
            let detail = waiting
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Some(format!("container {} is in {reason}{detail}", cs.name));
        }
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref())
        && terminated.exit_code != 0
    {
        return Some(format!(
            "container {} exited with code {} ({} restarts)",
            cs.name, terminated.exit_code, cs.restart_count
        ));
    }
    if cs.restart_count > 0
        && !cs.ready
        && let Some(last) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref())
        && last.exit_code != 0
    {
        return Some(format!(
            "container {} keeps exiting with code {} ({} restarts)",
            cs.name, last.exit_code, cs.restart_count
        ));
    }
    None
}
