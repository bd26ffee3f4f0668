//! The ClusterIP Service in front of the pods.

use faas_crds::FaasService;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{meta, selector_labels};

/// Port of the generated Service.
pub const SERVICE_PORT: i32 = 80;

/// In-cluster URL of a FaasService.
pub fn url(name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("http://{name}.{namespace}.svc.{cluster_domain}")
}

/// The Service, on port 80, to the pods' named port `http`.
pub(super) fn service(fs: &FaasService) -> Service {
    Service {
        metadata: meta(fs, fs.name_any()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(fs)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
