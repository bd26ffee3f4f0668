//! The row a valid PromptTemplate is published as (pure).

use faas_crds::PromptTemplate;
use faas_model::prompt::Content;
use kube::ResourceExt;

use super::validate::Validated;

/// One version of a template in the prompt component's table, `source = 'resource'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub tenant: String,
    pub name: String,
    pub content: Content,
    pub content_hash: String,
    /// Who the row says created it: the resource, as `namespace/name`.
    pub created_by: String,
}

/// The row for a validated PromptTemplate.
pub fn row(pt: &PromptTemplate, valid: &Validated) -> Row {
    let name = pt.name_any();
    Row {
        tenant: valid.tenant.clone(),
        created_by: format!(
            "prompttemplate:{}/{name}",
            pt.namespace().unwrap_or_default()
        ),
        name,
        content: valid.content.clone(),
        content_hash: valid.content_hash.clone(),
    }
}
