//! The PodDisruptionBudget, for services that may run more than one replica.

use faas_crds::FaasService;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{meta, selector_labels, wanted_replicas};

/// At most one pod unavailable through voluntary disruptions, or `None` for a service that
/// never runs more than one replica.
pub(super) fn pdb(fs: &FaasService) -> Option<PodDisruptionBudget> {
    let more_than_one = match &fs.spec.autoscaling {
        Some(a) => a.max_replicas > 1,
        None => wanted_replicas(fs) > 1,
    };
    if !more_than_one {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: meta(fs, fs.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(fs)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
