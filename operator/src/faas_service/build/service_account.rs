//! The ServiceAccount the pods run as.

use faas_crds::FaasService;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

use super::meta;

/// The pods' own ServiceAccount, without API access.
pub(super) fn service_account(fs: &FaasService) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(fs, fs.name_any()),
        // The runtime never talks to the Kubernetes API: no token in its pods.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
