//! What the tests of the operator under faults share: the control plane's processes taken
//! away and brought back (tests/e2e/cluster.sh stop/start), many FaasServices at once, and
//! the checks that every FaasService has exactly its own children.
//!
//! These tests break the cluster for everything else running on it: tests/e2e/run.sh runs
//! them (the tests named `faults::…`) one at a time after the rest of the suite, and tells
//! them the cluster's name in `FAAS_E2E_CLUSTER`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use faas_crds::FaasService;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::{Operator, TestNs, repo_root};

/// Label the operator puts on every child it makes.
pub const MANAGED: &str = "app.kubernetes.io/managed-by=faas-operator";

/// The local control plane the suite runs on, by the name tests/e2e/cluster.sh knows it by.
pub struct ControlPlane {
    pub name: String,
}

impl ControlPlane {
    /// The cluster `FAAS_E2E_CLUSTER` names. Panics when it is unset: a test that stops the
    /// API server must know which cluster it may break.
    pub fn from_env() -> ControlPlane {
        match std::env::var("FAAS_E2E_CLUSTER") {
            Ok(name) if !name.is_empty() => ControlPlane { name },
            _ => panic!(
                "FAAS_E2E_CLUSTER is not set: the fault tests stop and start processes of the \
                 control plane with tests/e2e/cluster.sh --name <cluster>; run them through \
                 tests/e2e/run.sh, or set it to the name of a disposable cluster"
            ),
        }
    }

    fn cluster_sh(&self, args: &[&str]) {
        let out = Command::new(repo_root().join("tests/e2e/cluster.sh"))
            .args(["--name", &self.name])
            .args(args)
            .output()
            .expect("running tests/e2e/cluster.sh");
        assert!(
            out.status.success(),
            "cluster.sh {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills `component` (`apiserver` or `etcd`) as a crash would; the returned guard starts
    /// it again when dropped, also when the test fails meanwhile.
    pub fn crash(&self, component: &'static str) -> Outage<'_> {
        self.cluster_sh(&["stop", component, "--kill"]);
        eprintln!("[e2e] {component} of cluster {} killed", self.name);
        Outage {
            plane: self,
            component,
            since: Instant::now(),
            over: false,
        }
    }

    /// Stops `component` (SIGTERM) and starts it again.
    pub fn restart(&self, component: &str) {
        self.cluster_sh(&["stop", component]);
        self.cluster_sh(&["start", component]);
        eprintln!("[e2e] {component} of cluster {} restarted", self.name);
    }
}

/// A component of the control plane that is down until [`Outage::end`].
pub struct Outage<'a> {
    plane: &'a ControlPlane,
    component: &'static str,
    since: Instant,
    over: bool,
}

impl Outage<'_> {
    /// How long it has been down.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }

    /// Starts the component again and waits until it is healthy (cluster.sh start waits).
    pub fn end(mut self) {
        self.restart();
    }

    fn restart(&mut self) {
        if !self.over {
            self.over = true;
            self.plane.cluster_sh(&["start", self.component]);
            eprintln!(
                "[e2e] {} of cluster {} back after {:.1?}",
                self.component,
                self.plane.name,
                self.since.elapsed()
            );
        }
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        self.restart();
    }
}

/// Creates FaasServices `<prefix>-0` … `<prefix>-<n-1>` (gateway, one replica), 16 requests at
/// a time; returns their names.
pub async fn create_many(ns: &TestNs, prefix: &str, n: usize) -> Vec<String> {
    let api = ns.api::<FaasService>();
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let api = api.clone();
            async move {
                let fs: FaasService = serde_json::from_value(json!({
                    "apiVersion": "faas.motadata.io/v1alpha1",
                    "kind": "FaasService",
                    "metadata": { "name": name },
                    "spec": { "component": "gateway", "replicas": 1 },
                }))
                .expect("a FaasService");
                api.create(&PostParams::default(), &fs)
                    .await
                    .with_context(|| format!("creating FaasService {name}"))
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("creating the FaasServices");
    names
}

/// Whether a FaasService is Ready for its current generation.
pub fn is_ready(fs: &FaasService) -> bool {
    let Some(status) = &fs.status else {
        return false;
    };
    status.observed_generation == fs.metadata.generation
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// How many of the namespace's FaasServices are Ready, and how many there are.
pub async fn count_ready(ns: &TestNs) -> anyhow::Result<(usize, usize)> {
    let all = ns
        .api::<FaasService>()
        .list(&ListParams::default())
        .await?
        .items;
    Ok((all.iter().filter(|f| is_ready(f)).count(), all.len()))
}

/// Waits until at least `n` FaasServices of the namespace are Ready; returns how many are.
pub async fn some_ready(ns: &TestNs, n: usize) -> usize {
    crate::wait_for(&format!("{n} FaasServices Ready"), crate::WAIT, || async {
        match count_ready(ns).await {
            Ok((ready, _)) if ready >= n => Ok(ready),
            Ok((ready, all)) => Err(format!("{ready} of {all} Ready")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Waits until every FaasService of the namespace (`expected` of them) is Ready; returns how
/// long it took.
pub async fn wait_all_ready(ns: &TestNs, expected: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::from("nothing listed yet");
    while start.elapsed() < timeout {
        match count_ready(ns).await {
            Ok((ready, all)) if ready == expected && all == expected => return start.elapsed(),
            Ok((ready, all)) => last = format!("{ready} of {all} Ready"),
            Err(e) => last = format!("listing FaasServices: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("timed out after {timeout:?} waiting for {expected} FaasServices Ready: {last}");
}

/// Every object labelled as the operator's in the namespace, as "Kind/name" → its controller
/// reference (kind, name, uid), for the four children every FaasService has.
pub async fn managed_children(
    ns: &TestNs,
) -> anyhow::Result<BTreeMap<String, Option<(String, String, String)>>> {
    async fn of<K>(
        ns: &TestNs,
        out: &mut BTreeMap<String, Option<(String, String, String)>>,
    ) -> anyhow::Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = ns.api();
        for o in api
            .list(&ListParams::default().labels(MANAGED))
            .await?
            .items
        {
            let controller = o
                .owner_references()
                .iter()
                .find(|r| r.controller == Some(true))
                .map(|r| (r.kind.clone(), r.name.clone(), r.uid.clone()));
            out.insert(format!("{}/{}", K::kind(&()), o.name_any()), controller);
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    of::<Deployment>(ns, &mut out).await?;
    of::<Service>(ns, &mut out).await?;
    of::<ConfigMap>(ns, &mut out).await?;
    of::<ServiceAccount>(ns, &mut out).await?;
    Ok(out)
}

/// Checks that every FaasService of the namespace has exactly its Deployment, Service,
/// ServiceAccount and ConfigMap, each controlled by it (its uid), and that no object the
/// operator labelled is left without a FaasService that controls it. Returns the problems.
pub async fn children_problems(ns: &TestNs) -> anyhow::Result<Vec<String>> {
    let services = ns
        .api::<FaasService>()
        .list(&ListParams::default())
        .await?
        .items;
    let children = managed_children(ns).await?;
    let uids: BTreeMap<String, String> = services
        .iter()
        .map(|f| (f.name_any(), f.uid().unwrap_or_default()))
        .collect();
    let mut problems = Vec::new();
    let mut expected = BTreeSet::new();
    for (name, uid) in &uids {
        for child in [
            format!("Deployment/{name}"),
            format!("Service/{name}"),
            format!("ServiceAccount/{name}"),
            format!("ConfigMap/{name}-config"),
        ] {
            match children.get(&child) {
                None => problems.push(format!("{child} is missing")),
                Some(Some((kind, owner, owner_uid)))
                    if kind == "FaasService" && owner == name && owner_uid == uid => {}
                Some(other) => problems.push(format!(
                    "{child} is controlled by {other:?}, not FaasService {name} ({uid})"
                )),
            }
            expected.insert(child);
        }
    }
    for (child, controller) in &children {
        if !expected.contains(child) {
            problems.push(format!(
                "{child} belongs to no FaasService (controller {controller:?})"
            ));
        }
    }
    // Names are unique per kind, so "exactly one" is the same as "the expected ones and no
    // other": a second copy would have to carry another name.
    Ok(problems)
}

/// A handle on a running operator's HTTP endpoints only (it owns no process), for a task that
/// samples its metrics beside the test.
pub fn observer(op: &Operator) -> Operator {
    Operator {
        child: None,
        identity: op.identity.clone(),
        port: op.port,
        log: op.log.clone(),
    }
}

/// Failed reconciles the operator counted, of every controller and category.
pub async fn reconcile_failures(op: &Operator) -> anyhow::Result<f64> {
    op.metric_sum("faas_operator_reconcile_failures_total")
        .await
}
