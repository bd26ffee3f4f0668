//! Pure builders: the objects a valid FaasService should have, one file per kind. No API
//! calls here.

mod configmap;
mod deployment;
mod hpa;
mod ingress;
mod labels;
mod pdb;
mod service;
mod service_account;

use faas_crds::FaasService;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::Defaults;
use super::validate::Validated;
use crate::kit::{self, hash_json, stamp};

pub use configmap::CONFIG_FILE;
pub use deployment::{
    AGENT_SECRETS_DIR, AGENT_SECRETS_ENV, AUTH_DIR, CONFIG_DIR, CONFIG_HASH_ANNOTATION, HTTP_PORT,
    JWKS_FILE, RUNTIME_UID, container_security_context, pod_security_context, secret_for,
    wanted_replicas,
};
pub use hpa::DEFAULT_CPU_TARGET;
pub use ingress::external_url;
pub use labels::{labels, selector_labels, selector_string};
pub use service::{SERVICE_PORT, url};

/// Every object the operator keeps for one FaasService. Optional children are `None` when the
/// spec does not ask for them; the controller deletes them if they exist.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub hpa: Option<HorizontalPodAutoscaler>,
    pub ingress: Option<Ingress>,
    pub pdb: Option<PodDisruptionBudget>,
}

/// Builds every child of a validated FaasService.
pub fn children(fs: &FaasService, valid: &Validated, defaults: &Defaults) -> Children {
    let config_map = configmap::config_map(fs);
    let config_hash = hash_json(&config_map.data);
    Children {
        service_account: stamp(service_account::service_account(fs)),
        deployment: stamp(deployment::deployment(fs, valid, defaults, &config_hash)),
        config_map: stamp(config_map),
        service: stamp(service::service(fs)),
        hpa: hpa::hpa(fs).map(stamp),
        ingress: ingress::ingress(fs).map(stamp),
        pdb: pdb::pdb(fs).map(stamp),
    }
}

/// Metadata of a child: its name, the FaasService's namespace and labels, and the controller
/// reference that lets the garbage collector delete it with the FaasService.
fn meta(fs: &FaasService, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: fs.namespace(),
        labels: Some(labels(fs)),
        owner_references: Some(vec![kit::owner_reference(fs)]),
        ..ObjectMeta::default()
    }
}
