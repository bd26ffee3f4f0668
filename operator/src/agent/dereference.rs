//! Reads what an Agent references: its PromptTemplate, the FaasService that serves it, the
//! Secrets its tool headers name (their key names only) and the Agents it calls as tools.
//! What was found goes to [`validate`](super::validate), which decides whether it is enough.

use std::collections::BTreeMap;

use faas_crds::{Agent, FaasService, PromptTemplate};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, Resource, ResourceExt};

use super::validate::{self, Found, Resolved, Template};
use super::{Error, Result};

/// Looks up every object the spec references, each once. Names that cannot name an object
/// are not looked up: validation reports them.
pub async fn dereference(client: &Client, ns: &str, agent: &Agent) -> Result<Resolved> {
    let (template, service, secrets, agents) = futures::try_join!(
        template(client, ns, agent),
        service(client, ns, agent),
        secrets(client, ns, agent),
        agents(client, ns, agent),
    )?;
    Ok(Resolved {
        template,
        service,
        secrets,
        agents,
    })
}

async fn template(client: &Client, ns: &str, agent: &Agent) -> Result<Option<Found<Template>>> {
    let Some(r) = &agent.spec.prompt_template_ref else {
        return Ok(None);
    };
    if !validate::is_object_name(&r.name) {
        return Ok(None);
    }
    let api: Api<PromptTemplate> = Api::namespaced(client.clone(), ns);
    let pt = api.get_opt(&r.name).await.map_err(Error::Dereference)?;
    Ok(Some(match pt {
        None => Found::Missing,
        Some(pt) => Found::Present(Template {
            deleting: pt.meta().deletion_timestamp.is_some(),
            tenant: pt.spec.tenant.clone().unwrap_or_else(|| ns.to_string()),
            version: pt.status.as_ref().and_then(|s| s.version),
            ready: pt
                .status
                .as_ref()
                .is_some_and(|s| faas_crds::conditions::is_true(&s.conditions, "Ready")),
        }),
    }))
}

async fn service(client: &Client, ns: &str, agent: &Agent) -> Result<Found<validate::Service>> {
    let name = &agent.spec.service_ref.name;
    if !validate::is_object_name(name) {
        return Ok(Found::Missing);
    }
    let api: Api<FaasService> = Api::namespaced(client.clone(), ns);
    let fs = api.get_opt(name).await.map_err(Error::Dereference)?;
    Ok(match fs {
        None => Found::Missing,
        Some(fs) => Found::Present(validate::Service {
            component: fs.spec.component,
            url: fs.status.as_ref().and_then(|s| s.url.clone()),
            ready: fs
                .status
                .as_ref()
                .is_some_and(|s| faas_crds::conditions::is_true(&s.conditions, "Ready")),
        }),
    })
}

/// The key names of each Secret the headers name; values never leave this function.
async fn secrets(
    client: &Client,
    ns: &str,
    agent: &Agent,
) -> Result<BTreeMap<String, Found<Vec<String>>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let names = unique(
        validate::secret_refs(agent)
            .into_iter()
            .map(|(_, s)| s.name.clone())
            .filter(|n| validate::is_object_name(n)),
    );
    let found = futures::future::try_join_all(names.iter().map(|name| api.get_opt(name)))
        .await
        .map_err(Error::Dereference)?;
    Ok(names
        .into_iter()
        .zip(found)
        .map(|(name, secret)| {
            let keys = match secret {
                None => Found::Missing,
                Some(s) => Found::Present(
                    s.data
                        .unwrap_or_default()
                        .into_keys()
                        .chain(s.string_data.unwrap_or_default().into_keys())
                        .collect(),
                ),
            };
            (name, keys)
        })
        .collect())
}

/// For each Agent called as a tool: its tenant, or `Missing`. This Agent itself is left to
/// validation.
async fn agents(
    client: &Client,
    ns: &str,
    agent: &Agent,
) -> Result<BTreeMap<String, Found<String>>> {
    let api: Api<Agent> = Api::namespaced(client.clone(), ns);
    let names = unique(
        validate::tool_agents(agent)
            .into_iter()
            .filter(|n| *n != agent.name_any() && validate::is_object_name(n)),
    );
    let found = futures::future::try_join_all(names.iter().map(|name| api.get_opt(name)))
        .await
        .map_err(Error::Dereference)?;
    Ok(names
        .into_iter()
        .zip(found)
        .map(|(name, other)| {
            let tenant = match other {
                Some(a) if a.meta().deletion_timestamp.is_none() => {
                    Found::Present(a.spec.tenant.clone().unwrap_or_else(|| ns.to_string()))
                }
                _ => Found::Missing,
            };
            (name, tenant)
        })
        .collect())
}

/// The names, sorted, each once: one read per object.
fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names.dedup();
    names
}
