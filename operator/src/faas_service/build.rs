//! Pure builders: the objects a valid FaasService should have. No API calls here.

use std::collections::BTreeMap;

use faas_crds::faas_service::{Backend, FaasService};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::Defaults;
use super::validate::{Auth, Validated};
use crate::kit::{self, hash_json, stamp};

/// Port the runtime listens on inside the pod.
pub const HTTP_PORT: i32 = 8080;
/// Port of the generated Service.
pub const SERVICE_PORT: i32 = 80;
/// Where the component configuration is mounted.
pub const CONFIG_DIR: &str = "/etc/faas";
/// File name of the component configuration inside the ConfigMap and the mount.
pub const CONFIG_FILE: &str = "config.json";
/// Pod annotation holding the hash of the configuration, so a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "faas.motadata.io/config-hash";
/// Where a JWKS document is mounted.
pub const AUTH_DIR: &str = "/etc/faas/auth";
/// File name of the mounted JWKS document.
pub const JWKS_FILE: &str = "jwks.json";
/// User and group the runtime runs as.
pub const RUNTIME_UID: i64 = 65532;

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

/// Labels on every generated object.
pub fn labels(fs: &FaasService) -> BTreeMap<String, String> {
    let mut l = selector_labels(fs);
    l.insert(
        "app.kubernetes.io/component".into(),
        fs.spec.component.as_str().into(),
    );
    l.insert("app.kubernetes.io/part-of".into(), "motadata-faas".into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "faas-operator".into(),
    );
    l
}

/// Labels that select the pods of one FaasService. They never change after creation, since a
/// Deployment's selector is immutable.
pub fn selector_labels(fs: &FaasService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "faas-runtime".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), fs.name_any()),
    ])
}

/// The selector of the pods as a string, for the scale subresource.
pub fn selector_string(fs: &FaasService) -> String {
    selector_labels(fs)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// In-cluster URL of a FaasService.
pub fn url(name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("http://{name}.{namespace}.svc.{cluster_domain}")
}

/// URL outside the cluster, when an ingress is set.
pub fn external_url(fs: &FaasService) -> Option<String> {
    fs.spec.ingress.as_ref().map(|i| {
        let scheme = if i.tls.is_some() { "https" } else { "http" };
        let host = i.host.trim_start_matches("*.");
        format!("{scheme}://{host}{}", i.path)
    })
}

/// The replicas wanted: the fixed count, or the autoscaler's minimum.
pub fn wanted_replicas(fs: &FaasService) -> i32 {
    match (&fs.spec.autoscaling, fs.spec.replicas) {
        (Some(a), _) => a.min_replicas,
        (None, Some(r)) => r,
        (None, None) => 1,
    }
}

fn meta(fs: &FaasService, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: fs.namespace(),
        labels: Some(labels(fs)),
        owner_references: Some(vec![kit::owner_reference(fs)]),
        ..ObjectMeta::default()
    }
}

/// Builds every child of a validated FaasService.
pub fn children(fs: &FaasService, valid: &Validated, defaults: &Defaults) -> Children {
    let config_map = config_map(fs);
    let config_hash = hash_json(&config_map.data);
    Children {
        service_account: stamp(service_account(fs)),
        deployment: stamp(deployment(fs, valid, defaults, &config_hash)),
        config_map: stamp(config_map),
        service: stamp(service(fs)),
        hpa: hpa(fs).map(stamp),
        ingress: ingress(fs).map(stamp),
        pdb: pdb(fs).map(stamp),
    }
}

fn service_account(fs: &FaasService) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(fs, fs.name_any()),
        // The runtime never talks to the Kubernetes API: no token in its pods.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

fn config_map(fs: &FaasService) -> ConfigMap {
    let config: BTreeMap<&String, serde_json::Value> = fs
        .spec
        .config
        .iter()
        .flatten()
        .map(|(k, v)| {
            let value = match v {
                IntOrString::Int(i) => serde_json::Value::from(*i),
                IntOrString::String(s) => serde_json::Value::from(s.as_str()),
            };
            (k, value)
        })
        .collect();
    let json = serde_json::to_string_pretty(&config).expect("JSON values serialize");
    ConfigMap {
        metadata: meta(fs, format!("{}-config", fs.name_any())),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), json)])),
        ..ConfigMap::default()
    }
}

fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Environment variable name for a dependency, e.g. `llm-gateway` → `LLM_GATEWAY`.
pub fn env_token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn container_env(fs: &FaasService, valid: &Validated, defaults: &Defaults) -> Vec<EnvVar> {
    let mut env = vec![
        env_value("FAAS_SERVICE_NAME", fs.name_any()),
        env_field("FAAS_NAMESPACE", "metadata.namespace"),
        env_field("FAAS_POD_NAME", "metadata.name"),
        env_value("FAAS_LISTEN", format!("0.0.0.0:{HTTP_PORT}")),
        env_value("FAAS_CONFIG_FILE", format!("{CONFIG_DIR}/{CONFIG_FILE}")),
        env_value("OTEL_SERVICE_NAME", format!("faas-{}", fs.spec.component)),
    ];
    for (backend, secret) in &valid.backends {
        env.push(env_from_secret(
            backend.env_name(),
            &secret.name,
            &secret.key,
        ));
    }
    match &valid.auth {
        Auth::Disabled => env.push(env_value("FAAS_AUTH", "disabled")),
        Auth::Hs256(secret) => {
            env.push(env_value("FAAS_AUTH", "jwt"));
            env.push(env_from_secret(
                "FAAS_JWT_HS256_SECRET",
                &secret.name,
                &secret.key,
            ));
        }
        Auth::Jwks(_) => {
            env.push(env_value("FAAS_AUTH", "jwt"));
            env.push(env_value(
                "FAAS_JWT_JWKS_FILE",
                format!("{AUTH_DIR}/{JWKS_FILE}"),
            ));
        }
    }
    if let Some(a) = &fs.spec.auth {
        if let Some(issuer) = &a.issuer {
            env.push(env_value("FAAS_JWT_ISSUER", issuer.clone()));
        }
        if let Some(audience) = &a.audience {
            env.push(env_value("FAAS_JWT_AUDIENCE", audience.clone()));
        }
    }
    for dep in &valid.dependencies {
        let url = url(
            &dep.name,
            &fs.namespace().unwrap_or_default(),
            &defaults.cluster_domain,
        );
        env.push(env_value(
            &format!("FAAS_{}_URL", env_token(dep.component.as_str())),
            url.clone(),
        ));
        env.push(env_value(
            &format!("FAAS_SERVICE_{}_URL", env_token(&dep.name)),
            url,
        ));
    }
    // Settings the user gives come last so that, on a duplicate name, theirs wins.
    env.extend(fs.spec.env.clone().unwrap_or_default());
    env
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// The restricted Pod Security profile, for the pod.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUNTIME_UID),
        run_as_group: Some(RUNTIME_UID),
        fs_group: Some(RUNTIME_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The restricted Pod Security profile, for each container.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn deployment(
    fs: &FaasService,
    valid: &Validated,
    defaults: &Defaults,
    config_hash: &str,
) -> Deployment {
    let spec = &fs.spec;
    let image = spec
        .image
        .clone()
        .unwrap_or_else(|| defaults.runtime_image.clone());
    let mut pod_annotations = spec.pod_annotations.clone().unwrap_or_default();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());

    let mut volume_mounts = vec![
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("256Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{}-config", fs.name_any()),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    if let Auth::Jwks(secret) = &valid.auth {
        volume_mounts.push(VolumeMount {
            name: "auth".into(),
            mount_path: AUTH_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "auth".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: JWKS_FILE.into(),
                    mode: None,
                    user: None,
                }]),
                default_mode: Some(0o440),
                optional: Some(false),
                default_user: None,
            }),
            ..Volume::default()
        });
    }

    let container = Container {
        name: "runtime".into(),
        image: Some(image),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec![
            "serve".into(),
            "--service".into(),
            spec.component.as_str().into(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(container_env(fs, valid, defaults)),
        env_from: spec.env_from.clone(),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        startup_probe: Some(http_probe("/healthz", 2, 30)),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };

    let mut template_labels = spec.pod_labels.clone().unwrap_or_default();
    template_labels.extend(labels(fs));
    Deployment {
        metadata: meta(fs, fs.name_any()),
        spec: DeploymentSpec {
            // Left out when an HPA owns the replica count, so the two never fight.
            replicas: if spec.autoscaling.is_some() {
                None
            } else {
                Some(wanted_replicas(fs))
            },
            selector: LabelSelector {
                match_labels: Some(selector_labels(fs)),
                ..LabelSelector::default()
            },
            revision_history_limit: Some(5),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(pod_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(fs.name_any()),
                    automount_service_account_token: Some(false),
                    security_context: Some(pod_security_context()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    image_pull_secrets: spec.image_pull_secrets.clone(),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    affinity: spec.affinity.clone(),
                    topology_spread_constraints: spec.topology_spread_constraints.clone(),
                    priority_class_name: spec.priority_class_name.clone(),
                    termination_grace_period_seconds: Some(30),
                    enable_service_links: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn service(fs: &FaasService) -> Service {
    Service {
        metadata: meta(fs, fs.name_any()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(fs)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn utilization(resource: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: resource.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

/// Average CPU utilisation the autoscaler aims for when no target is given.
pub const DEFAULT_CPU_TARGET: i32 = 80;

fn hpa(fs: &FaasService) -> Option<HorizontalPodAutoscaler> {
    let a = fs.spec.autoscaling.as_ref()?;
    let mut metrics = Vec::new();
    let cpu = match (
        a.target_cpu_utilization_percentage,
        a.target_memory_utilization_percentage,
    ) {
        (None, None) => Some(DEFAULT_CPU_TARGET),
        (cpu, _) => cpu,
    };
    if let Some(cpu) = cpu {
        metrics.push(utilization("cpu", cpu));
    }
    if let Some(memory) = a.target_memory_utilization_percentage {
        metrics.push(utilization("memory", memory));
    }
    Some(HorizontalPodAutoscaler {
        metadata: meta(fs, fs.name_any()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: fs.name_any(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: a.behavior.clone(),
        },
        ..HorizontalPodAutoscaler::default()
    })
}

fn ingress(fs: &FaasService) -> Option<Ingress> {
    let i = fs.spec.ingress.as_ref()?;
    let mut metadata = meta(fs, fs.name_any());
    metadata.annotations = i.annotations.clone();
    Some(Ingress {
        metadata,
        spec: Some(K8sIngressSpec {
            ingress_class_name: i.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(i.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(i.path.clone()),
                        path_type: i.path_type.as_str().into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: fs.name_any(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    number: None,
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            tls: i.tls.as_ref().map(|t| {
                vec![IngressTLS {
                    hosts: Some(vec![i.host.clone()]),
                    secret_name: Some(t.secret_name.clone()),
                }]
            }),
            ..K8sIngressSpec::default()
        }),
        ..Ingress::default()
    })
}

fn pdb(fs: &FaasService) -> Option<PodDisruptionBudget> {
    let more_than_one = match &fs.spec.autoscaling {
        Some(a) => a.max_replicas > 1,
        None => wanted_replicas(fs) > 1,
    };
    if !more_than_one {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: meta(fs, fs.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(fs)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// Whether a backend is wired to the given Secret in the built pod spec (used by tests).
pub fn secret_for(deployment: &Deployment, backend: Backend) -> Option<(String, String)> {
    let env = deployment.spec.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?;
    env.iter()
        .find(|e| e.name == backend.env_name())
        .and_then(|e| {
            let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((r.name.clone(), r.key.clone()))
        })
}
