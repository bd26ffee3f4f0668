//! The Ingress, when `spec.ingress` is set.

use faas_crds::FaasService;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use kube::ResourceExt;

use super::meta;

/// URL outside the cluster, when an ingress is set.
pub fn external_url(fs: &FaasService) -> Option<String> {
    fs.spec.ingress.as_ref().map(|i| {
        let scheme = if i.tls.is_some() { "https" } else { "http" };
        let host = i.host.trim_start_matches("*.");
        format!("{scheme}://{host}{}", i.path)
    })
}

/// The Ingress to the Service, or `None` without `spec.ingress`.
pub(super) fn ingress(fs: &FaasService) -> Option<Ingress> {
    let i = fs.spec.ingress.as_ref()?;
    let mut metadata = meta(fs, fs.name_any());
    metadata.annotations = i.annotations.clone();
    Some(Ingress {
        metadata,
        spec: Some(K8sIngressSpec {
            ingress_class_name: i.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(i.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(i.path.clone()),
                        path_type: i.path_type.as_str().into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: fs.name_any(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    number: None,
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            tls: i.tls.as_ref().map(|t| {
                vec![IngressTLS {
                    hosts: Some(vec![i.host.clone()]),
                    secret_name: Some(t.secret_name.clone()),
                }]
            }),
            ..K8sIngressSpec::default()
        }),
        ..Ingress::default()
    })
}
