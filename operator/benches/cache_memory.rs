//! What the FaasService controller's watch caches cost in memory, per kind: builds N
//! FaasServices and their children as the operator generates them (with the fields the API
//! server adds: uid, resourceVersion, creation time, owner references, a Deployment and pod
//! status), decodes each from JSON as a watch would, slims it as the controller does and puts
//! it in a reflector store, and reports the process's resident memory added per object.
//!
//! Usage: cargo bench -p faas-operator --bench cache_memory [-- N]   (N defaults to 10,000)
//!
//! The API server also fills in defaults the operator does not write (pod template fields
//! such as `terminationMessagePath`), so live objects are somewhat larger than these.

use std::collections::BTreeMap;

use faas_crds::FaasService;
use faas_operator::faas_service::Defaults;
use faas_operator::faas_service::build;
use faas_operator::faas_service::cache::{self, Cached};
use faas_operator::faas_service::validate::{self, Resolved};
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn faas_service(i: usize) -> FaasService {
    let conditions: Vec<Value> = ["Ready", "Progressing", "Degraded"]
        .iter()
        .map(|t| {
            json!({"type": t, "status": "True", "reason": "Available", "observedGeneration": 1,
                   "lastTransitionTime": "2026-12-01T00:00:00Z",
                   "message": "every replica is ready and serving"})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "faas.motadata.io/v1alpha1", "kind": "FaasService",
        "metadata": {"name": format!("svc-{i:05}"), "namespace": "bench",
                     "uid": format!("00000000-0000-0000-0000-{i:012}"),
                     "generation": 1, "resourceVersion": format!("{}", 1000 + i),
                     "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"component": "gateway", "replicas": 1, "config": {"FAAS_INDEX": i}},
        "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                   "url": format!("http://svc-{i:05}.bench.svc.cluster.local:8080"),
                   "conditions": conditions},
    }))
    .expect("a FaasService")
}

/// What the API server adds to a generated object.
fn as_live(mut v: Value, i: usize) -> Value {
    let meta = &mut v["metadata"];
    meta["uid"] = json!(format!("11111111-0000-0000-0000-{i:012}"));
    meta["resourceVersion"] = json!(format!("{}", 20000 + i));
    meta["creationTimestamp"] = json!("2026-12-01T00:00:01Z");
    meta["generation"] = json!(1);
    v
}

/// Decodes `n` objects from JSON into a store as a watch would, slimmed by `slim`; returns the
/// resident memory added per object, in bytes, and the store (so it is measured alive).
fn fill<K>(n: usize, make: impl Fn(usize) -> Value, slim: fn(&mut K)) -> (f64, reflector::Store<K>)
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone,
{
    let (store, mut writer): (_, Writer<K>) = reflector::store();
    let before = rss_kib();
    writer.apply_watcher_event(&Event::Init);
    for i in 0..n {
        let bytes = serde_json::to_vec(&make(i)).expect("serializes");
        let mut k: K = serde_json::from_slice(&bytes).expect("decodes");
        k.meta_mut().managed_fields = None;
        slim(&mut k);
        writer.apply_watcher_event(&Event::InitApply(k));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let added = rss_kib().saturating_sub(before) as f64 * 1024.0 / n as f64;
    (added, store)
}

/// Stores kept alive to the end, so that each kind is measured on fresh memory.
type Kept = Vec<Box<dyn std::any::Any>>;

fn child<K: Cached + Serialize>(
    n: usize,
    pick: fn(build::Children) -> K,
    kept: &mut Kept,
) -> (f64, usize) {
    let defaults = Defaults::default();
    let resolved = Resolved {
        secrets: [
            ("faas-database", "url"),
            ("faas-cache", "url"),
            ("faas-nats", "url"),
            ("faas-auth", "jwt-hs256-secret"),
        ]
        .into_iter()
        .map(|(s, k)| (s.to_string(), Some(vec![k.to_string()])))
        .collect(),
        dependencies: BTreeMap::new(),
        tool_secrets: Default::default(),
    };
    let make = |i: usize| {
        let fs = faas_service(i);
        let valid = validate::validate(&fs, &defaults, &resolved).expect("valid");
        let mut v = as_live(
            serde_json::to_value(pick(build::children(&fs, &valid, &defaults))).unwrap(),
            i,
        );
        if v["kind"] == "Deployment" {
            v["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": 1, "availableReplicas": 1,
                "conditions": [
                  {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": "2026-12-01T00:00:02Z", "lastTransitionTime": "2026-12-01T00:00:02Z"},
                  {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"svc-{i:05}-5d8f7c9b6d\" has successfully progressed."), "lastUpdateTime": "2026-12-01T00:00:02Z", "lastTransitionTime": "2026-12-01T00:00:01Z"}]});
        }
        v
    };
    let json_size = serde_json::to_vec(&make(0)).unwrap().len();
    let (per, store) = fill::<K>(n, make, cache::slim_child::<K>);
    kept.push(Box::new(store));
    (per, json_size)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut kept = Kept::new();
    let mut rows = vec![
        ("Deployment", child(n, |c| c.deployment, &mut kept)),
        ("Service", child(n, |c| c.service, &mut kept)),
        ("ConfigMap", child(n, |c| c.config_map, &mut kept)),
        ("ServiceAccount", child(n, |c| c.service_account, &mut kept)),
    ];
    let fs_json = serde_json::to_vec(&faas_service(0)).unwrap().len();
    let (fs_per, s) = fill::<FaasService>(
        n,
        |i| serde_json::to_value(faas_service(i)).unwrap(),
        |_| {},
    );
    kept.push(Box::new(s));
    rows.push(("FaasService", (fs_per, fs_json)));
    let pod = |i: usize| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("svc-{i:05}-5d8f7c9b6d-x7k2p"), "namespace": "bench",
                "uid": format!("22222222-0000-0000-0000-{i:012}"), "resourceVersion": "1",
                "labels": {"app.kubernetes.io/name": "faas-runtime", "app.kubernetes.io/instance": format!("svc-{i:05}"),
                           "app.kubernetes.io/component": "gateway", "pod-template-hash": "5d8f7c9b6d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("svc-{i:05}-5d8f7c9b6d"),
                                     "uid": format!("33333333-0000-0000-0000-{i:012}"), "controller": true}]},
            "spec": {"containers": [{"name": "runtime", "image": "motadata/faas-runtime:0.1.0"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "runtime", "image": "motadata/faas-runtime:0.1.0", "imageID": "", "ready": true,
                    "restartCount": 0, "started": true, "state": {"running": {"startedAt": "2026-12-01T00:00:03Z"}}}]}})
    };
    let pod_json = serde_json::to_vec(&pod(0)).unwrap().len();
    let (pod_per, s) = fill::<Pod>(n, pod, cache::slim_pod);
    kept.push(Box::new(s));
    rows.push(("Pod (slimmed)", (pod_per, pod_json)));

    println!("{n} objects of each kind, resident memory added per object in a store:");
    println!();
    println!("| kind | JSON as served | in the cache |");
    println!("|---|---|---|");
    let mut total = 0.0;
    for (kind, (per, json)) in &rows {
        total += per;
        println!(
            "| {kind} | {:.1} KiB | {:.1} KiB |",
            *json as f64 / 1024.0,
            per / 1024.0
        );
    }
    println!(
        "| per FaasService, all kinds | | {:.1} KiB |",
        total / 1024.0
    );
}
