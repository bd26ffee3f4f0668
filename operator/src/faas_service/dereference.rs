//! Reads what a FaasService references: the Secrets its pods take URLs and keys from, the
//! FaasServices named in dependsOn, and, for an agent service, the Agents it serves. What was
//! found goes to [`validate`], which decides whether it is enough.

use std::collections::{BTreeMap, BTreeSet};

use faas_crds::{Agent, Component, FaasService};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::validate::{self, Resolved, ToolSecret};
use super::{Defaults, Error, Result};

/// Looks up every object the spec references (with the operator's defaults filled in).
pub async fn dereference(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    defaults: &Defaults,
) -> Result<Resolved> {
    Ok(Resolved {
        secrets: secrets(client, ns, fs, defaults).await?,
        dependencies: dependencies(client, ns, fs).await?,
        tool_secrets: tool_secrets(client, ns, fs).await?,
    })
}

/// For an agent service, the Secret keys the tools of its Agents name, from the Agents of the
/// namespace as they are now (so an Agent that moved to another service or went is no longer
/// counted). Only names are read: the Secrets themselves are the kubelet's to read.
async fn tool_secrets(client: &Client, ns: &str, fs: &FaasService) -> Result<BTreeSet<ToolSecret>> {
    if fs.spec.component != Component::Agent {
        return Ok(BTreeSet::new());
    }
    let api: Api<Agent> = Api::namespaced(client.clone(), ns);
    let agents = api
        .list(&ListParams::default())
        .await
        .map_err(Error::Dereference)?;
    Ok(validate::tool_secrets(fs, &agents.items))
}

/// The key names of each referenced Secret; `None` for a Secret that does not exist.
async fn secrets(
    client: &Client,
    ns: &str,
    fs: &FaasService,
    defaults: &Defaults,
) -> Result<BTreeMap<String, Option<Vec<String>>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let auth = validate::auth(fs, defaults);
    let names = unique(
        validate::secret_refs(fs, defaults)
            .into_iter()
            .map(|(_, s)| s.name)
            .chain(auth.secret().map(|s| s.name.clone())),
    );
    let found = futures::future::try_join_all(names.iter().map(|name| api.get_opt(name)))
        .await
        .map_err(Error::Dereference)?;
    Ok(names
        .into_iter()
        .zip(found)
        .map(|(name, secret)| {
            // Only the key names are kept; values never leave this function.
            let keys = secret.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_keys()
                    .chain(s.string_data.unwrap_or_default().into_keys())
                    .collect()
            });
            (name, keys)
        })
        .collect())
}

/// The component of each FaasService in dependsOn; `None` for one that does not exist. A
/// FaasService naming itself is left to validation.
async fn dependencies(
    client: &Client,
    ns: &str,
    fs: &FaasService,
) -> Result<BTreeMap<String, Option<faas_crds::Component>>> {
    let api: Api<FaasService> = Api::namespaced(client.clone(), ns);
    let names = unique(
        validate::dependency_names(fs)
            .into_iter()
            .filter(|n| *n != fs.name_any()),
    );
    let found = futures::future::try_join_all(names.iter().map(|name| api.get_opt(name)))
        .await
        .map_err(Error::Dereference)?;
    Ok(names
        .into_iter()
        .zip(found)
        .map(|(name, dep)| (name, dep.map(|d| d.spec.component)))
        .collect())
}

/// The names, sorted, each once: one read per object.
fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names.dedup();
    names
}
