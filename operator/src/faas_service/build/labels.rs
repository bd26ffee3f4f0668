//! The labels every child of a FaasService carries, and those that select its pods.

use std::collections::BTreeMap;

use faas_crds::FaasService;
use kube::ResourceExt;

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
