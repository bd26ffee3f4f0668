//! Operator benchmark on a real API server (not a test): applies N FaasServices (default 1,000)
//! to one namespace with the operator running as a local process under the chart's
//! ServiceAccount, and reports
//!   - time until every child exists and until every FaasService is Ready,
//!   - p50/p99 of apply → Deployment created (as seen by a watch),
//!   - the operator's peak RSS,
//!   - API requests per reconcile (from the API server's apiserver_request_total),
//!   - the floor: `kubectl apply --server-side` of the same children, pre-rendered, into a
//!     second namespace, and the time until those Deployments are Available.
//!
//! Usage: FAAS_E2E_KUBECONFIG=<admin kubeconfig> cargo run -p faas-e2e --bin faas-bench
//! Environment: FAAS_BENCH_COUNT (default 1000), FAAS_BENCH_APPLY_CONCURRENCY (default 8).
//! Both runs' pods stay scheduled at once, so the cluster needs room for 2×N pods: with the
//! local control plane, start it with CLUSTER_NODES=6 for N=1000.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use faas_crds::FaasService;
use faas_e2e::{TestNs, tool, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Records when each object of kind K in the namespace was first seen (and passed `pred`).
fn first_seen<K>(api: Api<K>, pred: fn(&K) -> bool) -> Seen
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let seen: Seen = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(obj)) = stream.try_next().await {
            if pred(&obj) {
                out.lock()
                    .expect("not poisoned")
                    .entry(obj.name_any())
                    .or_insert_with(Instant::now);
            }
        }
    });
    seen
}

fn count(s: &Seen) -> usize {
    s.lock().expect("not poisoned").len()
}

fn is_ready(fs: &FaasService) -> bool {
    fs.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn is_available(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .is_some_and(|s| s.available_replicas.unwrap_or(0) >= d.spec.replicas.unwrap_or(1))
}

/// apiserver_request_total summed by (verb, resource/subresource).
async fn request_totals(client: &Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        let key = format!("{} {}", label("verb"), resource);
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(out)
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The live children of kind K, stripped to what a user would apply, into `target` namespace.
async fn rendered<K>(
    ns: &TestNs,
    target: &str,
    out: &mut Vec<serde_json::Value>,
) -> anyhow::Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let list = ns
        .api::<K>()
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=faas-operator"))
        .await?;
    for obj in list.items {
        let mut v = serde_json::to_value(&obj)?;
        let meta = v["metadata"].clone();
        v["metadata"] = json!({
            "name": meta["name"],
            "namespace": target,
            "labels": meta["labels"],
            "annotations": meta["annotations"],
        });
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        if K::kind(&()) == "Service"
            && let Some(spec) = v["spec"].as_object_mut()
        {
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(f);
            }
        }
        out.push(v);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("FAAS_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let concurrency: usize = std::env::var("FAAS_BENCH_APPLY_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let long = Duration::from_secs(3600);

    let ns = TestNs::new("bench").await;
    ns.create_backend_secrets().await;
    let op = ns.start_operator("faas-operator-bench", "op-bench").await;
    op.wait_ready().await;
    let pid = op.pid().context("operator pid")?;
    eprintln!(
        "[bench] operator up (pid {pid}); applying {n} FaasServices to {}",
        ns.name
    );

    let deployments = first_seen(ns.api::<Deployment>(), |_| true);
    let services = first_seen(ns.api::<Service>(), |s: &Service| {
        s.labels().contains_key("app.kubernetes.io/managed-by")
    });
    let config_maps = first_seen(ns.api::<ConfigMap>(), |c: &ConfigMap| {
        c.labels().contains_key("app.kubernetes.io/managed-by")
    });
    let accounts = first_seen(ns.api::<ServiceAccount>(), |s: &ServiceAccount| {
        s.labels().contains_key("app.kubernetes.io/managed-by")
    });
    let ready = first_seen(ns.api::<FaasService>(), is_ready);

    // RSS sampler.
    let peak_rss = Arc::new(Mutex::new(0u64));
    {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                let r = rss_kib(pid, "VmRSS:");
                {
                    let mut p = peak.lock().expect("not poisoned");
                    *p = (*p).max(r);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    let rss_idle = rss_kib(pid, "VmRSS:");
    let requests_before = request_totals(&ns.client).await?;
    let reconciles_before = op.reconciles().await?;

    // Apply.
    let api = ns.api::<FaasService>();
    let applied: Seen = Arc::default();
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let applied = applied.clone();
            async move {
                let name = format!("svc-{i:04}");
                let fs = json!({
                    "apiVersion": "faas.motadata.io/v1alpha1",
                    "kind": "FaasService",
                    "metadata": { "name": name },
                    "spec": { "component": "gateway", "replicas": 1, "config": { "FAAS_INDEX": i } },
                });
                let start = Instant::now();
                api.patch(&name, &PatchParams::apply("faas-bench"), &Patch::Apply(&fs))
                    .await
                    .with_context(|| format!("applying {name}"))?;
                applied.lock().expect("not poisoned").insert(name, start);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let t_applied = t0.elapsed();
    eprintln!("[bench] applied {n} in {}", secs(t_applied));

    wait_for("every child", long, || async {
        let c = [
            count(&deployments),
            count(&services),
            count(&config_maps),
            count(&accounts),
        ];
        if c.iter().all(|&x| x >= n) {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    let t_children = t0.elapsed();
    eprintln!("[bench] every child exists after {}", secs(t_children));
    wait_for("every FaasService Ready", long, || async {
        let r = count(&ready);
        if r >= n {
            Ok(())
        } else {
            Err(format!("{r} Ready"))
        }
    })
    .await;
    let t_ready = t0.elapsed();
    eprintln!("[bench] every FaasService Ready after {}", secs(t_ready));

    let requests_after = request_totals(&ns.client).await?;
    let reconciles = op.reconciles().await? - reconciles_before;
    let rss_peak = *peak_rss.lock().expect("not poisoned");
    let rss_hwm = rss_kib(pid, "VmHWM:");
    let rss_end = rss_kib(pid, "VmRSS:");

    let mut latencies: Vec<Duration> = {
        let applied = applied.lock().expect("not poisoned");
        let deps = deployments.lock().expect("not poisoned");
        applied
            .iter()
            .filter_map(|(name, start)| deps.get(name).map(|d| d.saturating_duration_since(*start)))
            .collect()
    };
    latencies.sort();

    // Requests during the run, by verb and resource (every client, not only the operator).
    let mut delta: Vec<(String, f64)> = requests_after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v - requests_before.get(k).copied().unwrap_or(0.0),
            )
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = delta.iter().map(|(_, d)| d).sum();
    // Requests only the operator makes: reads of the referenced Secrets, its status writes, and
    // reads, applies and deletes of the kinds it generates (other controllers watch those
    // kinds from their caches and write only status), and its pod lists.
    let generated = [
        "deployments",
        "services",
        "configmaps",
        "serviceaccounts",
        "horizontalpodautoscalers",
        "ingresses",
        "poddisruptionbudgets",
    ];
    let operator_only: f64 = delta
        .iter()
        .filter(|(k, _)| {
            let (verb, resource) = k.split_once(' ').unwrap_or_default();
            (verb == "GET" && resource == "secrets")
                || (verb == "LIST" && resource == "pods")
                || (matches!(verb, "APPLY" | "PATCH") && resource == "faasservices/status")
                || (matches!(verb, "GET" | "APPLY" | "PATCH" | "DELETE")
                    && generated.contains(&resource))
        })
        .map(|(_, d)| d)
        .sum();

    // Floor: the same children, pre-rendered, applied with kubectl in one go.
    drop(op);
    let floor_ns = TestNs::new("bench-floor").await;
    let mut docs = Vec::new();
    rendered::<ServiceAccount>(&ns, &floor_ns.name, &mut docs).await?;
    rendered::<ConfigMap>(&ns, &floor_ns.name, &mut docs).await?;
    rendered::<Service>(&ns, &floor_ns.name, &mut docs).await?;
    rendered::<Deployment>(&ns, &floor_ns.name, &mut docs).await?;
    let file = floor_ns.dir.join("children.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({ "apiVersion": "v1", "kind": "List", "items": docs }))?,
    )?;
    let floor_available = first_seen(floor_ns.api::<Deployment>(), is_available);
    let kubectl = tool("kubectl", "KUBECTL");
    let t1 = Instant::now();
    let out = Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(faas_e2e::kubeconfig_path())
        .args([
            "apply",
            "--server-side",
            "--field-manager=faas-bench-floor",
            "-f",
        ])
        .arg(&file)
        .output()
        .context("running kubectl")?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t_floor_apply = t1.elapsed();
    eprintln!(
        "[bench] floor: kubectl applied {} objects in {}",
        docs.len(),
        secs(t_floor_apply)
    );
    wait_for("floor Deployments Available", long, || async {
        let r = count(&floor_available);
        if r >= n {
            Ok(())
        } else {
            Err(format!("{r} Available"))
        }
    })
    .await;
    let t_floor_ready = t1.elapsed();
    eprintln!(
        "[bench] floor: every Deployment Available after {}",
        secs(t_floor_ready)
    );

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("### {n} FaasServices (component gateway, 1 replica each, one namespace)");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| apply of {n} FaasServices (server-side, {concurrency} at a time) | {} |",
        secs(t_applied)
    );
    println!(
        "| first apply → every child exists (Deployment, Service, ConfigMap, ServiceAccount) | {} |",
        secs(t_children)
    );
    println!(
        "| first apply → every FaasService Ready (kwok pods Ready) | {} |",
        secs(t_ready)
    );
    println!(
        "| apply → Deployment created, p50 | {} |",
        ms(percentile(&latencies, 50.0))
    );
    println!(
        "| apply → Deployment created, p99 | {} |",
        ms(percentile(&latencies, 99.0))
    );
    println!(
        "| apply → Deployment created, max | {} |",
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "| operator RSS idle / peak (sampled) / VmHWM / end | {} / {} / {} / {} MiB |",
        rss_idle / 1024,
        rss_peak / 1024,
        rss_hwm / 1024,
        rss_end / 1024
    );
    println!(
        "| reconciles | {reconciles:.0} ({:.2} per FaasService) |",
        reconciles / n as f64
    );
    println!("| API requests during the run, all clients | {total:.0} |");
    println!(
        "| API requests only the operator makes, per reconcile | {:.1} |",
        operator_only / reconciles.max(1.0)
    );
    println!(
        "| floor: `kubectl apply --server-side` of the {} pre-rendered children | {} |",
        docs.len(),
        secs(t_floor_apply)
    );
    println!(
        "| floor: apply → every Deployment Available | {} |",
        secs(t_floor_ready)
    );
    println!();
    println!("Requests during the operator run by verb and resource (all clients), top 20:");
    println!();
    println!("| verb resource | requests |");
    println!("|---|---|");
    for (k, d) in delta.iter().take(20) {
        println!("| {k} | {d:.0} |");
    }
    println!();
    println!(
        "Machine: {cpus} CPUs; operator debug build: {}",
        faas_e2e::operator_bin().display()
    );
    drop(floor_ns);
    drop(ns);
    Ok(())
}
