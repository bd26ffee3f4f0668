//! Reads what decides how a PromptTemplate may be deleted: the Agents of its namespace that
//! still reference it.

use faas_crds::{Agent, PromptTemplate};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::{Error, Result};

/// Names of the Agents of the namespace whose promptTemplateRef names `pt`, sorted; Agents
/// being deleted no longer count.
pub async fn referencing_agents(
    client: &Client,
    ns: &str,
    pt: &PromptTemplate,
) -> Result<Vec<String>> {
    let api: Api<Agent> = Api::namespaced(client.clone(), ns);
    let agents = api
        .list(&ListParams::default())
        .await
        .map_err(Error::Dereference)?;
    Ok(referencing(&agents.items, &pt.name_any()))
}

/// Names of the `agents` whose promptTemplateRef names `template`, sorted, leaving out
/// those being deleted.
pub fn referencing(agents: &[Agent], template: &str) -> Vec<String> {
    let mut names: Vec<String> = agents
        .iter()
        .filter(|a| a.metadata.deletion_timestamp.is_none())
        .filter(|a| {
            a.spec
                .prompt_template_ref
                .as_ref()
                .is_some_and(|r| r.name == template)
        })
        .map(|a| a.name_any())
        .collect();
    names.sort();
    names
}
