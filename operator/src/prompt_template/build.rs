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

/// Who the rows of the PromptTemplate say created them, `prompttemplate:namespace/name`:
/// the rows it owns, which it alone adds to, retires and deletes.
pub fn owner(pt: &PromptTemplate) -> String {
    format!(
        "prompttemplate:{}/{}",
        pt.namespace().unwrap_or_default(),
        pt.name_any()
    )
}

/// The row for a validated PromptTemplate.
pub fn row(pt: &PromptTemplate, valid: &Validated) -> Row {
    let name = pt.name_any();
    Row {
        tenant: valid.tenant.clone(),
        created_by: owner(pt),
        name,
        content: valid.content.clone(),
        content_hash: valid.content_hash.clone(),
    }
}
