//! The ConfigMap with the component configuration (`spec.config`), mounted into the pods.

use std::collections::BTreeMap;

use faas_crds::FaasService;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::meta;

/// File name of the component configuration inside the ConfigMap and the mount.
pub const CONFIG_FILE: &str = "config.json";

/// Name of the ConfigMap of a FaasService.
pub fn name(fs: &FaasService) -> String {
    format!("{}-config", fs.name_any())
}

/// `spec.config` as a JSON document under [`CONFIG_FILE`].
pub(super) fn config_map(fs: &FaasService) -> ConfigMap {
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
        metadata: meta(fs, name(fs)),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), json)])),
        ..ConfigMap::default()
    }
}
