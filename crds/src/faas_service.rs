//! `FaasService`: one component of the platform, run from the shared runtime image.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{SecretKey, SecretKeyRef, conditions_schema};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Desired state of a FaasService: which component of the platform to run, how many
/// replicas, how it scales, what it connects to and how it is exposed.
// Several printer columns share attribute values, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "faas.motadata.io",
    version = "v1alpha1",
    kind = "FaasService",
    plural = "faasservices",
    singular = "faasservice",
    shortname = "fsvc",
    category = "faas",
    namespaced,
    cel,
    status = "FaasServiceStatus",
    derive = "PartialEq",
    doc = "A component of the Motadata FaaS platform (LLM gateway, RAG, agents, …) run from the shared runtime image. The operator turns it into a Deployment, Service, ConfigMap, ServiceAccount and, when asked for, an HPA, Ingress and PodDisruptionBudget.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Component", type_ = "string", json_path = ".spec.component", description = "Platform component served"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether the service answers"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas", description = "Replicas wanted"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.readyReplicas", description = "Replicas ready to serve"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url", description = "In-cluster URL"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1, description = "Why the service is or is not ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]')").message("metadata.name must start with a letter and be at most 63 characters: it also names the generated Service"),
)]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("spec.replicas and spec.autoscaling are mutually exclusive: remove replicas when autoscaling is set, the HorizontalPodAutoscaler owns the replica count"),
)]
#[serde(rename_all = "camelCase")]
pub struct FaasServiceSpec {
    /// Which platform component the runtime serves: gateway, cache, prompt, llmops, rag,
    /// data-ingestion, agent, prompt-generator or ml. Cannot be changed after creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.component is immutable: create a new FaasService for another component"))]
    pub component: Component,

    /// Container image of the shared runtime. Defaults to the image the operator is configured
    /// with, so upgrading the operator upgrades every service that does not pin one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("!self.contains(' ')").message("spec.image must not contain spaces"))]
    pub image: Option<String>,

    /// When the kubelet pulls the image: Always, IfNotPresent or Never. Defaults to Kubernetes'
    /// own rule (Always for `:latest`, IfNotPresent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets with registry credentials for pulling the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// Fixed number of replicas. Leave it out when `autoscaling` is set. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Horizontal autoscaling (an autoscaling/v2 HorizontalPodAutoscaler owns the replica count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// CPU and memory requests and limits of the runtime container. Defaults to requests of
    /// 100m CPU / 128Mi memory and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra environment variables of the runtime container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,

    /// Extra environment variables taken from ConfigMaps or Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,

    /// Component settings: runtime setting names (for example `FAAS_REQUEST_TIMEOUT_SECS`)
    /// to numbers or strings. Written to a ConfigMap mounted into the pods; a change rolls the
    /// pods. Quote booleans and decimals (`"true"`, `"0.5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 256))]
    pub config: Option<BTreeMap<String, IntOrString>>,

    /// How callers authenticate to the service. Defaults to JWTs signed with the HS256 key in
    /// the operator's default Secret (key `jwt-hs256-secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Secret holding the Postgres connection URL (injected as DATABASE_URL). Defaults to the
    /// Secret named in the operator's configuration, key `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<SecretKeyRef>,

    /// Secret holding the Redis/Dragonfly URL (injected as REDIS_URL). Defaults to the Secret
    /// named in the operator's configuration, key `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<SecretKeyRef>,

    /// Secret holding the NATS URL (injected as NATS_URL). Defaults to the Secret named in the
    /// operator's configuration, key `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<SecretKeyRef>,

    /// Expose the service outside the cluster through a networking.k8s.io/v1 Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// Other FaasServices of this namespace this one calls. Their in-cluster URLs are injected
    /// as FAAS_<COMPONENT>_URL (for example FAAS_GATEWAY_URL) and FAAS_SERVICE_<NAME>_URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(d, self.exists_one(e, e.name == d.name))").message("spec.dependsOn must not name the same FaasService twice"))]
    pub depends_on: Option<Vec<DependsOn>>,

    /// Labels added to every pod (for example for network policies or workload identity).
    /// The labels that select the pods (`app.kubernetes.io/name`, `app.kubernetes.io/instance`)
    /// cannot be overridden.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// Annotations added to every pod (for example for a service mesh or log collector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Node labels a node must have to run the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the pods spread over zones and nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,

    /// Stop changing the generated objects. Nothing is deleted; the status is still reported.
    #[serde(default)]
    pub paused: bool,
}

/// Authentication of the service's callers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("self.disabled ? !has(self.hs256SecretRef) && !has(self.jwksSecretRef) : has(self.hs256SecretRef) != has(self.jwksSecretRef)").message("spec.auth: set exactly one of hs256SecretRef and jwksSecretRef, or disabled: true (development only) with neither"),
)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Accept every request without a token. For development only: callers then choose their
    /// tenant freely.
    #[serde(default)]
    pub disabled: bool,

    /// Secret key holding the shared HS256 signing key (at least 16 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hs256_secret_ref: Option<SecretKey>,

    /// Secret key holding a JWKS document with the RS256 public keys; mounted as a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_secret_ref: Option<SecretKey>,

    /// Required `iss` claim of the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: Option<String>,

    /// Required `aud` claim of the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub audience: Option<String>,
}

/// The platform components and the backends each needs live in `faas-model`, the one
/// table the operator and the runtime read.
pub use faas_model::{Backend, Component};

impl FaasServiceSpec {
    /// The Secret reference set in the spec for a backing service, if any.
    pub fn backend_ref(&self, backend: Backend) -> Option<&SecretKeyRef> {
        match backend {
            Backend::Database => self.database.as_ref(),
            Backend::Cache => self.cache.as_ref(),
            Backend::Nats => self.nats.as_ref(),
        }
    }
}

/// Image pull policy of the runtime container.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr,
)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Horizontal autoscaling settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.autoscaling.minReplicas must be less than or equal to maxReplicas"),
)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest replicas the autoscaler keeps. Defaults to 1.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Most replicas the autoscaler may run.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average CPU use, in percent of the CPU request, the autoscaler aims for. Defaults to 80
    /// when no memory target is set either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization_percentage: Option<i32>,

    /// Average memory use, in percent of the memory request, the autoscaler aims for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_memory_utilization_percentage: Option<i32>,

    /// Scale-up and scale-down behaviour (stabilization windows and policies), as in
    /// autoscaling/v2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<HorizontalPodAutoscalerBehavior>,
}

fn default_min_replicas() -> i32 {
    1
}

/// How the service is exposed outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name clients use, for example `rag.example.com` or `*.example.com`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^(\\\\*\\\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.ingress.host must be a lowercase DNS name such as api.example.com (a leading '*.' is allowed), without scheme, port or path"))]
    pub host: String,

    /// URL path routed to the service. Defaults to `/`.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('/') && !self.contains(' ') && !self.contains('//')").message("spec.ingress.path must start with '/' and contain no spaces or '//'"))]
    pub path: String,

    /// How the path is matched: Prefix (default), Exact or ImplementationSpecific.
    #[serde(default = "default_path_type")]
    pub path_type: PathType,

    /// IngressClass that serves the Ingress. Defaults to the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,

    /// Serve HTTPS with the certificate in this TLS Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,

    /// Annotations of the Ingress (for example for cert-manager or the ingress controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

fn default_path() -> String {
    "/".to_string()
}

fn default_path_type() -> PathType {
    PathType::Prefix
}

/// Ingress path matching.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr,
)]
pub enum PathType {
    Prefix,
    Exact,
    ImplementationSpecific,
}

impl PathType {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// TLS of the Ingress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Secret of type kubernetes.io/tls with the certificate and key, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// Another FaasService this one calls.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DependsOn {
    /// Name of the FaasService, in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// Observed state of a FaasService.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaasServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Progressing and Degraded, with a reason and a message that says what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Replicas wanted (fixed, or chosen by the autoscaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Replicas ready to serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Image the pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// In-cluster URL of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// URL outside the cluster, when an ingress is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
}
