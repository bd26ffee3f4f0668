//! Prometheus metrics of the controllers.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

/// Labels of failure metrics: controller and a bounded error category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub category: &'static str,
}

/// Labels of the API request counter: the verb as the API server names it (GET, LIST, WATCH,
/// CREATE, APPLY, PATCH, UPDATE, DELETE) and the resource, with its subresource
/// (`deployments`, `faasservices/status`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: &'static str,
    pub resource: String,
}

impl RequestLabels {
    /// The labels of a request to the API server, from its method, path (`/api/v1/...` or
    /// `/apis/<group>/<version>/...`), query and content type.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        let uri = request.uri();
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let rest: &[&str] = match segments.as_slice() {
            ["api", _version, rest @ ..] => rest,
            ["apis", _group, _version, rest @ ..] => rest,
            _ => &[],
        };
        // A namespaced path, unless it names the namespace itself.
        let rest = match rest {
            ["namespaces", _ns, resource, tail @ ..] => {
                let mut r = vec![*resource];
                r.extend_from_slice(tail);
                r
            }
            other => other.to_vec(),
        };
        let resource = match rest.as_slice() {
            [] => "other".to_string(),
            [resource] | [resource, _] => resource.to_string(),
            [resource, _, sub, ..] => format!("{resource}/{sub}"),
        };
        let named = rest.len() >= 2;
        let watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        let apply = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
        let verb = match *request.method() {
            http::Method::GET if watch => "WATCH",
            http::Method::GET if named => "GET",
            http::Method::GET => "LIST",
            http::Method::POST => "CREATE",
            http::Method::PUT => "UPDATE",
            http::Method::PATCH if apply => "APPLY",
            http::Method::PATCH => "PATCH",
            http::Method::DELETE => "DELETE",
            _ => "OTHER",
        };
        Self { verb, resource }
    }
}

/// Metrics shared by all controllers.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Requests the operator sent to the API server.
    pub api_requests: Family<RequestLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub leader: Gauge,
    pub registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("faas_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let leader = Gauge::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register("reconcile", "Reconciles run", reconciles.clone());
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb and resource",
            api_requests.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Self {
            reconciles,
            api_requests,
            failures,
            duration,
            leader,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard is dropped.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            start: Instant::now(),
            controller,
            metrics: self.clone(),
        }
    }

    /// Counts a request to the API server.
    pub fn api_request<B>(&self, request: &http::Request<B>) {
        self.api_requests
            .get_or_create(&RequestLabels::of(request))
            .inc();
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, controller: &'static str, category: &'static str) {
        self.failures
            .get_or_create(&FailureLabels {
                controller,
                category,
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    controller: &'static str,
    metrics: Metrics,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: &str, uri: &str, content_type: Option<&str>) -> (&'static str, String) {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let l = RequestLabels::of(&request.body(()).unwrap());
        (l.verb, l.resource)
    }

    #[test]
    fn names_requests_as_the_api_server_does() {
        let cases = [
            (
                ("GET", "/api/v1/namespaces/a/secrets/db", None),
                ("GET", "secrets"),
            ),
            (
                (
                    "GET",
                    "/apis/apps/v1/namespaces/a/deployments?labelSelector=x",
                    None,
                ),
                ("LIST", "deployments"),
            ),
            (
                (
                    "GET",
                    "/apis/apps/v1/deployments?watch=true&resourceVersion=1",
                    None,
                ),
                ("WATCH", "deployments"),
            ),
            (("GET", "/api/v1/pods", None), ("LIST", "pods")),
            (
                (
                    "PATCH",
                    "/apis/faas.motadata.io/v1alpha1/namespaces/a/faasservices/x/status?fieldManager=f",
                    Some("application/apply-patch+yaml"),
                ),
                ("APPLY", "faasservices/status"),
            ),
            (
                (
                    "PATCH",
                    "/api/v1/namespaces/a/configmaps/c",
                    Some("application/merge-patch+json"),
                ),
                ("PATCH", "configmaps"),
            ),
            (
                ("POST", "/apis/events.k8s.io/v1/namespaces/a/events", None),
                ("CREATE", "events"),
            ),
            (
                (
                    "PUT",
                    "/apis/coordination.k8s.io/v1/namespaces/a/leases/l",
                    None,
                ),
                ("UPDATE", "leases"),
            ),
            (
                (
                    "DELETE",
                    "/apis/policy/v1/namespaces/a/poddisruptionbudgets/p",
                    None,
                ),
                ("DELETE", "poddisruptionbudgets"),
            ),
            (("GET", "/api/v1/namespaces/a", None), ("GET", "namespaces")),
            (("GET", "/version", None), ("LIST", "other")),
        ];
        for ((method, uri, ct), (verb, resource)) in cases {
            assert_eq!(
                labels(method, uri, ct),
                (verb, resource.to_string()),
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn counts_and_times_reconciles() {
        let m = Metrics::default();
        drop(m.reconcile("faasservice"));
        m.failure("faasservice", "conflict");
        let text = m.encode();
        assert!(
            text.contains("faas_operator_reconcile_total{controller=\"faasservice\"} 1"),
            "{text}"
        );
        assert!(text.contains("faas_operator_reconcile_failures_total{controller=\"faasservice\",category=\"conflict\"} 1"), "{text}");
        assert!(
            text.contains(
                "faas_operator_reconcile_duration_seconds_count{controller=\"faasservice\"} 1"
            ),
            "{text}"
        );
    }
}
