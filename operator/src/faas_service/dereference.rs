//! Reads what a FaasService references: the Secrets its pods take URLs and keys from (their
//! key names, read by name and kept a short while), and from the watch caches the
//! FaasServices named in dependsOn and, for an agent service, the Agents it serves. What was
//! found goes to [`validate`], which decides whether it is enough.

use std::collections::{BTreeMap, BTreeSet};

use faas_crds::{Agent, Component, FaasService};
use kube::ResourceExt;

use super::cache::Caches;
use super::validate::{self, Resolved, ToolSecret};
use super::{Context, Error, Result};

/// Looks up every object the spec references (with the operator's defaults filled in).
pub async fn dereference(ctx: &Context, ns: &str, fs: &FaasService) -> Result<Resolved> {
    Ok(Resolved {
        secrets: secrets(ctx, ns, fs).await?,
        dependencies: dependencies(&ctx.caches, ns, fs),
        tool_secrets: tool_secrets(&ctx.caches, ns, fs),
    })
}

/// For an agent service, the Secret keys the tools of its Agents name, from the Agents of the
/// namespace as they are now (so an Agent that moved to another service or went is no longer
/// counted). Only names are read: the Secrets themselves are the kubelet's to read.
fn tool_secrets(caches: &Caches, ns: &str, fs: &FaasService) -> BTreeSet<ToolSecret> {
    if fs.spec.component != Component::Agent {
        return BTreeSet::new();
    }
    let agents: Vec<Agent> = caches
        .agents(ns)
        .into_iter()
        .map(|a| (*a).clone())
        .collect();
    validate::tool_secrets(fs, &agents)
}

/// The key names of each referenced Secret; `None` for a Secret that does not exist.
async fn secrets(
    ctx: &Context,
    ns: &str,
    fs: &FaasService,
) -> Result<BTreeMap<String, Option<Vec<String>>>> {
    let auth = validate::auth(fs, &ctx.defaults);
    let names = unique(
        validate::secret_refs(fs, &ctx.defaults)
            .into_iter()
            .map(|(_, s)| s.name)
            .chain(auth.secret().map(|s| s.name.clone())),
    );
    let found = futures::future::try_join_all(
        names
            .iter()
            .map(|name| ctx.reads.secret_keys.get(&ctx.client, ns, name)),
    )
    .await
    .map_err(Error::Dereference)?;
    Ok(names
        .into_iter()
        .zip(found)
        .map(|(name, keys)| (name, keys.map(|k| k.as_ref().clone())))
        .collect())
}

/// The component of each FaasService in dependsOn; `None` for one that does not exist. A
/// FaasService naming itself is left to validation.
fn dependencies(
    caches: &Caches,
    ns: &str,
    fs: &FaasService,
) -> BTreeMap<String, Option<faas_crds::Component>> {
    unique(
        validate::dependency_names(fs)
            .into_iter()
            .filter(|n| *n != fs.name_any()),
    )
    .into_iter()
    .map(|name| {
        let component = caches.faas_service(ns, &name).map(|d| d.spec.component);
        (name, component)
    })
    .collect()
}

/// The names, sorted, each once: one read per object.
fn unique(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names.dedup();
    names
}
