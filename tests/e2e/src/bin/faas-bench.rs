//! Operator benchmark on a real API server (not a test). With the operator running as a local
//! process under the chart's ServiceAccount, it first applies FaasServices one at a time to an
//! idle cluster (default 50), each once the one before is Ready, then N at once (default
//! 1,000) to the same namespace, then touches each of the N with an annotation (a change that
//! asks for nothing new), and reports
//!   - p50/p99 of apply → Deployment created (as seen by a watch), idle and under the burst,
//!   - time until every child exists and until every FaasService is Ready,
//!   - the operator's RSS,
//!   - the requests the operator sent, by verb and resource (its own
//!     faas_operator_api_requests_total), per reconcile and per FaasService, for the burst and
//!     for the touches (steady state), and every client's (apiserver_request_total),
//!   - the floor: `kubectl apply --server-side` of the same children, pre-rendered, into a
//!     second namespace, and the time until those Deployments are Available.
//!
//! Usage: FAAS_E2E_KUBECONFIG=<admin kubeconfig> cargo run -p faas-e2e --bin faas-bench
//! Environment: FAAS_BENCH_COUNT (default 1000), FAAS_BENCH_IDLE (default 50),
//! FAAS_BENCH_APPLY_CONCURRENCY (default 8), FAAS_BENCH_WAIT_READY (default 1; 0 stops at
//! the children, for runs so large that the controller manager and kwok making the pods
//! Ready would take most of the time, and the floor then stops at kubectl's apply).
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

/// How many of the bench's burst (names `svc-…`) were seen.
fn count(s: &Seen) -> usize {
    s.lock()
        .expect("not poisoned")
        .keys()
        .filter(|k| k.starts_with("svc-"))
        .count()
}

/// When `name` was first seen, waiting for it up to `within`.
async fn seen_at(s: &Seen, name: &str, within: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(at) = s.lock().expect("not poisoned").get(name) {
            return Ok(*at);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} not seen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The change of each counter from `before` to `after`, largest first, zeros left out.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    d
}

/// The operator's requests that run a reconcile, leaving out its watches (long-lived, one per
/// kind) and its leader election's Lease renewals, which happen whether or not it works.
fn reconcile_requests(d: &[(String, f64)]) -> Vec<(String, f64)> {
    d.iter()
        .filter(|(k, _)| !k.starts_with("WATCH ") && !k.ends_with(" leases"))
        .cloned()
        .collect()
}

fn sum(d: &[(String, f64)]) -> f64 {
    d.iter().map(|(_, v)| v).fold(0.0, |a, b| a + b)
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
    for (labels, value) in faas_e2e::samples(&text, "apiserver_request_total") {
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        *out.entry(format!("{} {}", label("verb"), resource))
            .or_default() += value;
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
    for obj in list
        .items
        .into_iter()
        .filter(|o| o.name_any().starts_with("svc-"))
    {
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
    let wait_ready = std::env::var("FAAS_BENCH_WAIT_READY").as_deref() != Ok("0");
    let idle: usize = std::env::var("FAAS_BENCH_IDLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
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
    let api = ns.api::<FaasService>();
    let fs_doc = |name: &str, i: usize| {
        json!({
            "apiVersion": "faas.motadata.io/v1alpha1",
            "kind": "FaasService",
            "metadata": { "name": name },
            "spec": { "component": "gateway", "replicas": 1, "config": { "FAAS_INDEX": i } },
        })
    };
    // Idle: one at a time, each once the one before is Ready.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut idle_latencies = Vec::new();
    for i in 0..idle {
        let name = format!("idle-{i:03}");
        let start = Instant::now();
        api.patch(
            &name,
            &PatchParams::apply("faas-bench"),
            &Patch::Apply(&fs_doc(&name, i)),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
        let at = seen_at(&deployments, &name, long).await?;
        idle_latencies.push(at.saturating_duration_since(start));
        seen_at(&ready, &name, long).await?;
    }
    idle_latencies.sort();
    eprintln!(
        "[bench] idle: apply → Deployment p50 {} p99 {}",
        ms(percentile(&idle_latencies, 50.0)),
        ms(percentile(&idle_latencies, 99.0))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let rss_idle = rss_kib(pid, "VmRSS:");
    let requests_before = request_totals(&ns.client).await?;
    let reconciles_before = op.reconciles().await?;
    let operator_before = op.api_requests().await?;

    // Apply.
    let applied: Seen = Arc::default();
    let t0 = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let applied = applied.clone();
            let fs = fs_doc(&format!("svc-{i:05}"), i);
            async move {
                let name = format!("svc-{i:05}");
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
    if wait_ready {
        wait_for("every FaasService Ready", long, || async {
            let r = count(&ready);
            if r >= n {
                Ok(())
            } else {
                Err(format!("{r} Ready"))
            }
        })
        .await;
    }
    let t_ready = t0.elapsed();
    eprintln!("[bench] every FaasService Ready after {}", secs(t_ready));

    let requests_after = request_totals(&ns.client).await?;
    let reconciles = op.reconciles().await? - reconciles_before;
    let operator_after = op.api_requests().await?;

    // Steady state, once everything is Ready: an annotation on each asks the operator for
    // nothing new.
    let steady = if wait_ready {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let steady_before = op.api_requests().await?;
        let steady_reconciles_before = op.reconciles().await?;
        futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let name = format!("svc-{i:05}");
                    let touch =
                        json!({"metadata": {"annotations": {"bench.motadata.io/touched": "1"}}});
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&touch))
                        .await
                        .with_context(|| format!("touching {name}"))?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        wait_for("every touch reconciled", long, || async {
            let done = op.reconciles().await.map_err(|e| e.to_string())? - steady_reconciles_before;
            if done >= n as f64 {
                Ok(())
            } else {
                Err(format!("{done} reconciles"))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let steady_reconciles = op.reconciles().await? - steady_reconciles_before;
        let steady = reconcile_requests(&delta(&steady_before, &op.api_requests().await?));
        Some((steady_reconciles, steady))
    } else {
        None
    };
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

    // Requests during the run, by verb and resource: every client's, and the operator's own.
    let delta_all = delta(&requests_before, &requests_after);
    let total = sum(&delta_all);
    let operator = reconcile_requests(&delta(&operator_before, &operator_after));
    let operator_total = sum(&operator);
    // What kubectl makes too: one apply of each of the four children.
    let children_applies: f64 = operator
        .iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "APPLY deployments"
                    | "APPLY services"
                    | "APPLY configmaps"
                    | "APPLY serviceaccounts"
            )
        })
        .map(|(_, v)| v)
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
    if wait_ready {
        wait_for("floor Deployments Available", long, || async {
            let r = count(&floor_available);
            if r >= n {
                Ok(())
            } else {
                Err(format!("{r} Available"))
            }
        })
        .await;
    }
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
        "| idle cluster, one at a time ({idle}): apply → Deployment created, p50 / p99 / max | {} / {} / {} |",
        ms(percentile(&idle_latencies, 50.0)),
        ms(percentile(&idle_latencies, 99.0)),
        ms(idle_latencies.last().copied().unwrap_or_default())
    );
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
        if wait_ready {
            secs(t_ready)
        } else {
            "not waited for".into()
        }
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
        "| operator requests (no watches, no Lease) | {operator_total:.0}: {:.2} per reconcile, {:.2} per FaasService |",
        operator_total / reconciles.max(1.0),
        operator_total / n as f64
    );
    println!(
        "| of which not the four child applies kubectl makes too | {:.0}: {:.2} per reconcile, {:.2} per FaasService |",
        operator_total - children_applies,
        (operator_total - children_applies) / reconciles.max(1.0),
        (operator_total - children_applies) / n as f64
    );
    if let Some((steady_reconciles, steady)) = &steady {
        println!(
            "| steady state: {n} annotation changes → {steady_reconciles:.0} reconciles, operator requests | {:.0} |",
            sum(steady)
        );
    }
    println!(
        "| floor: `kubectl apply --server-side` of the {} pre-rendered children | {} |",
        docs.len(),
        secs(t_floor_apply)
    );
    println!(
        "| floor: apply → every Deployment Available | {} |",
        if wait_ready {
            secs(t_floor_ready)
        } else {
            "not waited for".into()
        }
    );
    println!();
    println!("The operator's requests during the burst, by verb and resource:");
    println!();
    println!("| verb resource | requests |");
    println!("|---|---|");
    for (k, d) in &operator {
        println!("| {k} | {d:.0} |");
    }
    if let Some((_, steady)) = steady.as_ref().filter(|(_, s)| !s.is_empty()) {
        println!();
        println!("The operator's requests in steady state: {steady:?}");
    }
    println!();
    println!("Requests during the operator run by verb and resource (all clients), top 20:");
    println!();
    println!("| verb resource | requests |");
    println!("|---|---|");
    for (k, d) in delta_all.iter().take(20) {
        println!("| {k} | {d:.0} |");
    }
    println!();
    println!(
        "Machine: {cpus} CPUs; operator binary: {}",
        faas_e2e::operator_bin().display()
    );
    drop(floor_ns);
    drop(ns);
    Ok(())
}
