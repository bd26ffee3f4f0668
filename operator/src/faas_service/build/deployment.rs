//! The Deployment that runs the shared runtime image as one component, and its pod template:
//! environment, volumes, probes and the restricted Pod Security profile.

use std::collections::{BTreeMap, BTreeSet};

use faas_crds::SecretKey;
use faas_crds::faas_service::{Backend, FaasService};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretProjection, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::configmap::{self, CONFIG_FILE};
use super::{labels, meta, selector_labels, url};
use crate::faas_service::Defaults;
use crate::faas_service::validate::{Auth, ToolSecret, Validated};

/// Port the runtime listens on inside the pod.
pub const HTTP_PORT: i32 = 8080;
/// Where the component configuration is mounted.
pub const CONFIG_DIR: &str = "/etc/faas";
/// Pod annotation holding the hash of the configuration, so a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "faas.motadata.io/config-hash";
/// Where a JWKS document is mounted.
pub const AUTH_DIR: &str = "/etc/faas/auth";
/// File name of the mounted JWKS document.
pub const JWKS_FILE: &str = "jwks.json";
/// User and group the runtime runs as.
pub const RUNTIME_UID: i64 = 65532;
/// Where an agent service's pods find the Secret keys its Agents' tools name, as
/// `<tenant>/<secret>/<key>`.
pub const AGENT_SECRETS_DIR: &str = "/var/run/faas/agent-secrets";
/// The variable that tells the agent component where they are.
pub const AGENT_SECRETS_ENV: &str = "FAAS_AGENT_SECRETS_DIR";
/// Mode of mounted Secret files: read by the owner and by the pod's fsGroup, which the
/// kubelet gives them (the owner is root), and by nobody else.
const SECRET_FILE_MODE: i32 = 0o440;

/// The replicas wanted: the fixed count, or the autoscaler's minimum.
pub fn wanted_replicas(fs: &FaasService) -> i32 {
    match (&fs.spec.autoscaling, fs.spec.replicas) {
        (Some(a), _) => a.min_replicas,
        (None, Some(r)) => r,
        (None, None) => 1,
    }
}

/// The Deployment; `config_hash` is the hash of the ConfigMap's data, so a change of
/// configuration rolls the pods.
pub(super) fn deployment(
    fs: &FaasService,
    valid: &Validated,
    defaults: &Defaults,
    config_hash: &str,
) -> Deployment {
    Deployment {
        metadata: meta(fs, fs.name_any()),
        spec: DeploymentSpec {
            // Left out when an HPA owns the replica count, so the two never fight.
            replicas: if fs.spec.autoscaling.is_some() {
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
            template: pod_template(fs, valid, defaults, config_hash),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

fn pod_template(
    fs: &FaasService,
    valid: &Validated,
    defaults: &Defaults,
    config_hash: &str,
) -> PodTemplateSpec {
    let spec = &fs.spec;
    let mut annotations = spec.pod_annotations.clone().unwrap_or_default();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.into());
    let mut template_labels = spec.pod_labels.clone().unwrap_or_default();
    template_labels.extend(labels(fs));
    let (volumes, volume_mounts) = volumes(fs, valid);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(template_labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(fs.name_any()),
            automount_service_account_token: Some(false),
            security_context: Some(pod_security_context()),
            containers: vec![container(fs, valid, defaults, volume_mounts)],
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
    }
}

fn container(
    fs: &FaasService,
    valid: &Validated,
    defaults: &Defaults,
    volume_mounts: Vec<VolumeMount>,
) -> Container {
    let spec = &fs.spec;
    let image = spec
        .image
        .clone()
        .unwrap_or_else(|| defaults.runtime_image.clone());
    Container {
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
    }
}

/// The pod's volumes and the container's mounts of them: a scratch /tmp (the root filesystem
/// is read-only), the configuration, the JWKS document when auth uses one, and the Secret
/// keys an agent service's tools name.
fn volumes(fs: &FaasService, valid: &Validated) -> (Vec<Volume>, Vec<VolumeMount>) {
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
                name: configmap::name(fs),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
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
    if let Auth::Jwks(secret) = &valid.auth {
        volumes.push(jwks_volume(secret));
        mounts.push(VolumeMount {
            name: "auth".into(),
            mount_path: AUTH_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if let Some(volume) = tool_secrets_volume(&valid.tool_secrets) {
        mounts.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: AGENT_SECRETS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(volume);
    }
    (volumes, mounts)
}

/// One projected volume with each named key of each Secret at `<tenant>/<secret>/<key>`, and
/// nothing else of the Secret; `None` when no tool names one. Every source is optional: a
/// missing Secret or key leaves its file out, never the pods unstarted (the Agent reports it).
fn tool_secrets_volume(secrets: &BTreeSet<ToolSecret>) -> Option<Volume> {
    let mut by_secret: BTreeMap<&str, Vec<KeyToPath>> = BTreeMap::new();
    // The set is ordered by Secret, tenant and key, so sources and items come out sorted.
    for s in secrets {
        by_secret.entry(&s.secret).or_default().push(KeyToPath {
            key: s.key.clone(),
            path: format!("{}/{}/{}", s.tenant, s.secret, s.key),
            mode: None,
            user: None,
        });
    }
    if by_secret.is_empty() {
        return None;
    }
    let sources = by_secret
        .into_iter()
        .map(|(name, items)| VolumeProjection {
            secret: Some(SecretProjection {
                name: name.to_string(),
                items: Some(items),
                optional: Some(true),
            }),
            ..VolumeProjection::default()
        })
        .collect();
    Some(Volume {
        name: "agent-secrets".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(SECRET_FILE_MODE),
            default_user: None,
            sources: Some(sources),
        }),
        ..Volume::default()
    })
}

fn jwks_volume(secret: &SecretKey) -> Volume {
    Volume {
        name: "auth".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.name.clone()),
            items: Some(vec![KeyToPath {
                key: secret.key.clone(),
                path: JWKS_FILE.into(),
                mode: None,
                user: None,
            }]),
            default_mode: Some(SECRET_FILE_MODE),
            optional: Some(false),
            default_user: None,
        }),
        ..Volume::default()
    }
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
    env.extend(auth_env(fs, &valid.auth));
    env.extend(dependency_env(fs, valid, defaults));
    if !valid.tool_secrets.is_empty() {
        env.push(env_value(AGENT_SECRETS_ENV, AGENT_SECRETS_DIR));
    }
    // Settings the user gives come last so that, on a duplicate name, theirs wins.
    env.extend(fs.spec.env.clone().unwrap_or_default());
    env
}

/// How the runtime verifies callers: the mode, the key, and the claims it checks.
fn auth_env(fs: &FaasService, auth: &Auth) -> Vec<EnvVar> {
    let mut env = match auth {
        Auth::Disabled => vec![env_value("FAAS_AUTH", "disabled")],
        Auth::Hs256(secret) => vec![
            env_value("FAAS_AUTH", "jwt"),
            env_from_secret("FAAS_JWT_HS256_SECRET", &secret.name, &secret.key),
        ],
        Auth::Jwks(_) => vec![
            env_value("FAAS_AUTH", "jwt"),
            env_value("FAAS_JWT_JWKS_FILE", format!("{AUTH_DIR}/{JWKS_FILE}")),
        ],
    };
    if let Some(a) = &fs.spec.auth {
        if let Some(issuer) = &a.issuer {
            env.push(env_value("FAAS_JWT_ISSUER", issuer.clone()));
        }
        if let Some(audience) = &a.audience {
            env.push(env_value("FAAS_JWT_AUDIENCE", audience.clone()));
        }
    }
    env
}

/// The URL of each service in dependsOn, by component and by name.
fn dependency_env(fs: &FaasService, valid: &Validated, defaults: &Defaults) -> Vec<EnvVar> {
    let namespace = fs.namespace().unwrap_or_default();
    let mut env = Vec::new();
    for dep in &valid.dependencies {
        let url = url(&dep.name, &namespace, &defaults.cluster_domain);
        env.push(env_value(&dep.component.url_env(), url.clone()));
        env.push(env_value(
            &format!("FAAS_SERVICE_{}_URL", env_token(&dep.name)),
            url,
        ));
    }
    env
}

/// Environment variable token for a FaasService name, e.g. `llm-gateway` → `LLM_GATEWAY`; any
/// character a variable name cannot hold (a name may have dots) becomes `_`.
fn env_token(name: &str) -> String {
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
