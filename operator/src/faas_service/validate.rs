//! Pure validation of what the schema cannot check: references to other objects.

use std::collections::{BTreeMap, BTreeSet};

use faas_crds::faas_service::{Backend, Component, FaasService};
use faas_crds::{Agent, SecretKey, SecretKeyRef};
use kube::ResourceExt;
use strum::VariantArray;

use super::Defaults;
use crate::agent::validate as agent;
use crate::kit::tenant;

/// What the controller found about the objects a FaasService references.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    /// Secrets by name: `Some(keys)` when the Secret exists, `None` when it does not.
    pub secrets: BTreeMap<String, Option<Vec<String>>>,
    /// FaasServices named in dependsOn: `Some(component)` when found, `None` when not.
    pub dependencies: BTreeMap<String, Option<Component>>,
    /// For an agent service, the Secret keys the tools of the Agents it serves name.
    pub tool_secrets: BTreeSet<ToolSecret>,
}

/// A FaasService whose references all resolve, with the defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// The backing services the pods are wired to, with the Secret key that holds each URL.
    pub backends: Vec<(Backend, SecretKeyRef)>,
    /// The services named in dependsOn, with their components.
    pub dependencies: Vec<Dependency>,
    /// How callers authenticate.
    pub auth: Auth,
    /// The Secret keys the pods of an agent service can read for the tools of its Agents;
    /// empty for every other component.
    pub tool_secrets: BTreeSet<ToolSecret>,
}

/// A Secret key that an http tool's header names, as the agent component reads it: the file
/// `<tenant>/<secret>/<key>` of its Secrets folder. Ordered by Secret, then tenant, then key,
/// so the volume built from a set of them is always the same.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ToolSecret {
    pub secret: String,
    pub tenant: String,
    pub key: String,
}

/// The Secret keys that the tools of the Agents served by `fs` name. An Agent being deleted
/// no longer needs its keys; a tenant, name or key no Secret file could have is left out
/// (the Agent reports it), so one Agent can never stop the pods of the service.
pub fn tool_secrets(fs: &FaasService, agents: &[Agent]) -> BTreeSet<ToolSecret> {
    let name = fs.name_any();
    agents
        .iter()
        .filter(|a| a.spec.service_ref.name == name && a.metadata.deletion_timestamp.is_none())
        .flat_map(|a| {
            let tenant = agent::tenant(a);
            agent::secret_refs(a)
                .into_iter()
                .map(move |(_, r)| ToolSecret {
                    secret: r.name.clone(),
                    tenant: tenant.clone(),
                    key: r.key.clone(),
                })
        })
        .filter(|s| {
            tenant::is_valid(&s.tenant)
                && agent::is_object_name(&s.secret)
                && agent::is_secret_key(&s.key)
        })
        .collect()
}

/// Key of the operator's default auth Secret that holds the HS256 key.
pub const DEFAULT_AUTH_KEY: &str = "jwt-hs256-secret";

/// How a service verifies its callers.
#[derive(Clone, Debug, PartialEq)]
pub enum Auth {
    /// No verification (explicit development setting).
    Disabled,
    /// HS256 with the key in this Secret.
    Hs256(SecretKey),
    /// RS256 with the JWKS document in this Secret.
    Jwks(SecretKey),
}

impl Auth {
    /// The Secret the keys come from, if any.
    pub fn secret(&self) -> Option<&SecretKey> {
        match self {
            Auth::Disabled => None,
            Auth::Hs256(s) | Auth::Jwks(s) => Some(s),
        }
    }
}

/// The authentication a FaasService asks for, with the operator's default filled in.
pub fn auth(fs: &FaasService, defaults: &Defaults) -> Auth {
    match &fs.spec.auth {
        Some(a) if a.disabled => Auth::Disabled,
        Some(a) => match (&a.hs256_secret_ref, &a.jwks_secret_ref) {
            (Some(s), _) => Auth::Hs256(s.clone()),
            (None, Some(s)) => Auth::Jwks(s.clone()),
            (None, None) => Auth::Hs256(SecretKey {
                name: defaults.auth_secret.clone(),
                key: DEFAULT_AUTH_KEY.into(),
            }),
        },
        None => Auth::Hs256(SecretKey {
            name: defaults.auth_secret.clone(),
            key: DEFAULT_AUTH_KEY.into(),
        }),
    }
}

/// A resolved dependency.
#[derive(Clone, Debug, PartialEq)]
pub struct Dependency {
    pub name: String,
    pub component: Component,
}

/// Why a FaasService cannot be built; the user has to change something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// CamelCase reason, used in conditions and events.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The Secrets a FaasService needs: the ones it names, plus the operator's defaults for the
/// backends its component cannot run without.
pub fn secret_refs(fs: &FaasService, defaults: &Defaults) -> Vec<(Backend, SecretKeyRef)> {
    Backend::VARIANTS
        .iter()
        .filter_map(|&backend| {
            let secret = match fs.spec.backend_ref(backend) {
                Some(explicit) => explicit.clone(),
                None if fs.spec.component.needs(backend) => {
                    SecretKeyRef::new(defaults.secret_for(backend), "url")
                }
                None => return None,
            };
            Some((backend, secret))
        })
        .collect()
}

/// Names of the FaasServices a FaasService depends on.
pub fn dependency_names(fs: &FaasService) -> Vec<String> {
    fs.spec
        .depends_on
        .iter()
        .flatten()
        .map(|d| d.name.clone())
        .collect()
}

/// Checks that a Secret exists and holds `key`; `purpose` and `origin` tell the user what it
/// is for and which setting names it.
fn check_secret(
    resolved: &Resolved,
    namespace: &str,
    name: &str,
    key: &str,
    purpose: &str,
    origin: &str,
) -> Result<(), Invalid> {
    match resolved.secrets.get(name) {
        Some(Some(keys)) if keys.iter().any(|k| k == key) => Ok(()),
        Some(Some(_)) => Err(Invalid {
            reason: "SecretKeyNotFound",
            message: format!(
                "Secret {namespace}/{name} has no key '{key}', needed for {purpose} by {origin}"
            ),
        }),
        _ => Err(Invalid {
            reason: "SecretNotFound",
            message: format!(
                "Secret {namespace}/{name} does not exist; it must hold key '{key}' with {purpose}, referenced by {origin}"
            ),
        }),
    }
}

/// Checks the references of a FaasService against what was found.
pub fn validate(
    fs: &FaasService,
    defaults: &Defaults,
    resolved: &Resolved,
) -> Result<Validated, Invalid> {
    let namespace = fs.namespace().unwrap_or_default();
    let component = fs.spec.component;
    if !component.served() && fs.spec.image.is_none() {
        return Err(Invalid {
            reason: "ComponentNotServed",
            message: format!(
                "the runtime image of this release ({}) does not serve the component {component}; \
                 set spec.image to an image that does, or choose another component",
                defaults.runtime_image
            ),
        });
    }
    let backends = secret_refs(fs, defaults);
    for (backend, secret) in &backends {
        check_backend(fs, resolved, &namespace, *backend, secret)?;
    }
    let auth = auth(fs, defaults);
    if let Some(secret) = auth.secret() {
        let origin = if fs.spec.auth.is_some() {
            "spec.auth"
        } else {
            "the operator's default for JWT verification (set spec.auth to use another)"
        };
        let SecretKey { name, key } = secret;
        check_secret(resolved, &namespace, name, key, "the JWT key", origin)?;
    }
    let dependencies = dependency_names(fs)
        .into_iter()
        .map(|name| check_dependency(fs, resolved, &namespace, name))
        .collect::<Result<_, _>>()?;
    let tool_secrets = if fs.spec.component == Component::Agent {
        resolved.tool_secrets.clone()
    } else {
        BTreeSet::new()
    };
    Ok(Validated {
        backends,
        dependencies,
        auth,
        tool_secrets,
    })
}

/// Checks the Secret a backend's URL comes from.
fn check_backend(
    fs: &FaasService,
    resolved: &Resolved,
    namespace: &str,
    backend: Backend,
    secret: &SecretKeyRef,
) -> Result<(), Invalid> {
    let origin = if fs.spec.backend_ref(backend).is_some() {
        backend.field().to_string()
    } else {
        format!(
            "the operator's default for {} (set {} to use another)",
            backend.env_name(),
            backend.field()
        )
    };
    let purpose = format!("the {} URL", backend.env_name());
    let SecretKeyRef { name, key } = secret;
    check_secret(resolved, namespace, name, key, &purpose, &origin)
}

/// Checks that a FaasService in dependsOn exists and is not this one.
fn check_dependency(
    fs: &FaasService,
    resolved: &Resolved,
    namespace: &str,
    name: String,
) -> Result<Dependency, Invalid> {
    if name == fs.name_any() {
        return Err(Invalid {
            reason: "InvalidDependency",
            message: format!("spec.dependsOn names this FaasService itself ({name}); remove it"),
        });
    }
    match resolved.dependencies.get(&name) {
        Some(Some(component)) => Ok(Dependency {
            name,
            component: *component,
        }),
        _ => Err(Invalid {
            reason: "DependencyNotFound",
            message: format!(
                "spec.dependsOn names FaasService {namespace}/{name}, which does not exist; create it or remove it from dependsOn"
            ),
        }),
    }
}
