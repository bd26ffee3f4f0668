//! The FaasService reconcile against an in-memory API server: create, update, prune, invalid
//! references, status transitions, paused, and no writes in steady state.

mod support;

use std::sync::Arc;

use faas_crds::FaasService;
use faas_crds::conditions::{DEGRADED, PROGRESSING, READY, find};
use faas_operator::faas_service::{self, Context, Defaults};
use faas_operator::metrics::Metrics;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use support::FakeApi;

const NS: &str = "team-a";
const FS_PATH: &str = "/apis/faas.motadata.io/v1alpha1/namespaces/team-a/faasservices/llm";
const DEPLOY: &str = "/apis/apps/v1/namespaces/team-a/deployments/llm";
const SERVICE: &str = "/api/v1/namespaces/team-a/services/llm";
const CONFIGMAP: &str = "/api/v1/namespaces/team-a/configmaps/llm-config";
const SA: &str = "/api/v1/namespaces/team-a/serviceaccounts/llm";
const HPA: &str = "/apis/autoscaling/v2/namespaces/team-a/horizontalpodautoscalers/llm";
const INGRESS: &str = "/apis/networking.k8s.io/v1/namespaces/team-a/ingresses/llm";
const PDB: &str = "/apis/policy/v1/namespaces/team-a/poddisruptionbudgets/llm";

struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
}

impl Harness {
    fn new() -> Self {
        let (client, api) = FakeApi::start();
        let reporter = Reporter {
            controller: "faas-operator".into(),
            instance: Some("test".into()),
        };
        let ctx = Arc::new(Context::new(
            client.clone(),
            Recorder::new(client, reporter),
            Defaults::default(),
            Metrics::default(),
        ));
        Self { api, ctx }
    }

    fn with_secrets(self) -> Self {
        for (name, key) in [
            ("faas-database", "url"),
            ("faas-cache", "url"),
            ("faas-nats", "url"),
            ("faas-auth", "jwt-hs256-secret"),
        ] {
            self.api.put(
                &format!("/api/v1/namespaces/{NS}/secrets/{name}"),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": {key: "c2VjcmV0"}}),
            );
        }
        self
    }

    fn create(&self, spec: Value) {
        self.api.put(
            FS_PATH,
            json!({
                "apiVersion": "faas.motadata.io/v1alpha1",
                "kind": "FaasService",
                "metadata": {"name": "llm", "namespace": NS, "generation": 1},
                "spec": spec,
            }),
        );
    }

    fn update_spec(&self, f: impl FnOnce(&mut Value)) {
        self.api.edit(FS_PATH, |o| {
            f(&mut o["spec"]);
            let g = o["metadata"]["generation"].as_i64().unwrap();
            o["metadata"]["generation"] = json!(g + 1);
        });
    }

    fn current(&self) -> FaasService {
        serde_json::from_value(self.api.get(FS_PATH).unwrap()).unwrap()
    }

    async fn reconcile(&self) -> kube::runtime::controller::Action {
        faas_service::reconcile(Arc::new(self.current()), self.ctx.clone())
            .await
            .expect("reconcile succeeds")
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let fs = self.current();
        let c = find(&fs.status.as_ref().unwrap().conditions, type_)
            .unwrap_or_else(|| panic!("{type_} is set"))
            .clone();
        (c.status, c.reason)
    }

    /// Marks the Deployment as fully rolled out with all replicas ready.
    fn deployment_ready(&self) {
        self.api.edit(DEPLOY, |d| {
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            d["metadata"]["generation"] = json!(1);
            d["status"] = json!({
                "observedGeneration": 1,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            });
        });
    }
}

#[tokio::test]
async fn creates_children_and_reports_progress() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway", "replicas": 1}));
    // Rolling out: looked at again soon, whatever the watches deliver.
    let action = h.reconcile().await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(faas_service::PROGRESS_RECHECK)
    );

    for path in [SA, CONFIGMAP, DEPLOY, SERVICE] {
        let obj = h
            .api
            .get(path)
            .unwrap_or_else(|| panic!("{path} was created"));
        let owner = &obj["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "FaasService", "{path}");
        assert_eq!(owner["controller"], true, "{path}");
    }
    for path in [HPA, INGRESS, PDB] {
        assert!(h.api.get(path).is_none(), "{path} is not wanted");
    }
    let deploy = h.api.get(DEPLOY).unwrap();
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["serve", "--service", "gateway"])
    );

    let (status, reason) = h.condition(READY);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Starting"));
    assert_eq!(
        h.condition(PROGRESSING),
        ("True".into(), "RollingOut".into())
    );
    let fs = h.current();
    let st = fs.status.unwrap();
    assert_eq!(
        st.url.as_deref(),
        Some("http://llm.team-a.svc.cluster.local")
    );
    assert_eq!(
        st.selector.as_deref(),
        Some("app.kubernetes.io/instance=llm,app.kubernetes.io/name=faas-runtime")
    );
    assert_eq!(st.observed_generation, Some(1));
    assert!(
        h.api.writes().iter().any(|w| w.contains("/events")),
        "an Applied event: {:?}",
        h.api.writes()
    );
}

#[tokio::test]
async fn becomes_ready_then_writes_nothing_in_steady_state() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway", "replicas": 2}));
    h.reconcile().await;
    h.deployment_ready();
    // Ready: only the slow resync remains.
    assert_eq!(
        h.reconcile().await,
        kube::runtime::controller::Action::requeue(faas_service::RESYNC)
    );
    // From nothing to Ready, two Events: the children applied, and available.
    let events: Vec<String> = h
        .api
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("POST") && w.contains("/events"))
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(h.condition(READY), ("True".into(), "Available".into()));
    assert_eq!(
        h.condition(PROGRESSING),
        ("False".into(), "RolloutComplete".into())
    );
    assert_eq!(h.condition(DEGRADED), ("False".into(), "AsExpected".into()));
    let ready_since = find(&h.current().status.unwrap().conditions, READY)
        .unwrap()
        .last_transition_time
        .clone();
    assert!(
        h.api.get(PDB).is_some(),
        "two replicas get a PodDisruptionBudget"
    );

    h.api.clear_calls();
    for _ in 0..3 {
        h.reconcile().await;
    }
    assert_eq!(
        h.api.writes(),
        Vec::<String>::new(),
        "steady state writes nothing"
    );
    assert!(!h.api.calls().is_empty());
    assert!(
        !h.api.calls().iter().any(|c| c.path.ends_with("/pods")),
        "pods are not listed while every replica is ready"
    );
    let deployment_reads = h.api.calls().iter().filter(|c| c.path == DEPLOY).count();
    assert_eq!(deployment_reads, 3, "one Deployment read per reconcile");
    let still = find(&h.current().status.unwrap().conditions, READY)
        .unwrap()
        .last_transition_time
        .clone();
    assert_eq!(ready_since, still);
}

#[tokio::test]
async fn spec_change_patches_only_what_changed() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "rag", "replicas": 1}));
    h.reconcile().await;
    h.deployment_ready();
    h.reconcile().await;
    h.api.clear_calls();

    h.update_spec(|s| s["image"] = json!("registry.local/faas-runtime:2.0.0"));
    h.reconcile().await;
    let writes = h.api.writes();
    assert!(writes.contains(&format!("PATCH {DEPLOY}")), "{writes:?}");
    for untouched in [SA, CONFIGMAP, SERVICE] {
        assert!(
            !writes.contains(&format!("PATCH {untouched}")),
            "{untouched} unchanged: {writes:?}"
        );
    }
    let deploy = h.api.get(DEPLOY).unwrap();
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/faas-runtime:2.0.0"
    );

    // A config change rolls the pods through the config hash annotation.
    let before =
        deploy["spec"]["template"]["metadata"]["annotations"]["faas.motadata.io/config-hash"]
            .clone();
    h.update_spec(|s| s["config"] = json!({"FAAS_CHUNK_SIZE": 512}));
    h.reconcile().await;
    let deploy = h.api.get(DEPLOY).unwrap();
    assert_ne!(
        before,
        deploy["spec"]["template"]["metadata"]["annotations"]["faas.motadata.io/config-hash"]
    );
    let cm = h.api.get(CONFIGMAP).unwrap();
    assert!(
        cm["data"]["config.json"]
            .as_str()
            .unwrap()
            .contains("\"FAAS_CHUNK_SIZE\": 512")
    );
}

#[tokio::test]
async fn removing_ingress_and_autoscaling_prunes_them() {
    let h = Harness::new().with_secrets();
    h.create(json!({
        "component": "rag",
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
        "ingress": {"host": "rag.example.com", "path": "/", "pathType": "Prefix"},
    }));
    h.reconcile().await;
    for path in [HPA, INGRESS, PDB] {
        assert!(h.api.get(path).is_some(), "{path} created");
    }
    assert!(
        h.api.get(DEPLOY).unwrap()["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    assert_eq!(
        h.current().status.unwrap().external_url.as_deref(),
        Some("http://rag.example.com/")
    );

    h.update_spec(|s| {
        s.as_object_mut().unwrap().remove("ingress");
        s.as_object_mut().unwrap().remove("autoscaling");
    });
    h.reconcile().await;
    let writes = h.api.writes();
    for path in [HPA, INGRESS, PDB] {
        assert!(h.api.get(path).is_none(), "{path} pruned");
        assert!(writes.contains(&format!("DELETE {path}")), "{writes:?}");
    }
    assert_eq!(h.api.get(DEPLOY).unwrap()["spec"]["replicas"], 1);
}

#[tokio::test]
async fn a_child_we_do_not_own_is_never_pruned() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway"}));
    h.api.put(INGRESS, json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "llm", "namespace": NS}}));
    h.reconcile().await;
    assert!(h.api.get(INGRESS).is_some());
}

#[tokio::test]
async fn an_object_someone_else_made_under_a_childs_name_is_not_taken_over() {
    let h = Harness::new().with_secrets();
    let theirs = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "llm-config", "namespace": NS, "labels": {"team": "theirs"}},
        "data": {"owner": "someone else"},
    });
    h.api.put(CONFIGMAP, theirs.clone());
    h.create(json!({"component": "gateway", "replicas": 1}));
    let action = h.reconcile().await;

    // Reported, not taken over: their ConfigMap is left exactly as it was, and nothing that
    // would use it is created.
    let (status, reason) = h.condition(READY);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ChildConflict")
    );
    assert_eq!(
        h.condition(DEGRADED),
        ("True".into(), "ChildConflict".into())
    );
    assert_eq!(
        h.condition(PROGRESSING),
        ("False".into(), "ChildConflict".into())
    );
    let fs = h.current();
    let ready = find(&fs.status.as_ref().unwrap().conditions, READY).unwrap();
    assert!(
        ready.message.contains("ConfigMap llm-config")
            && ready.message.contains("has no controller"),
        "{}",
        ready.message
    );
    let live = h.api.get(CONFIGMAP).unwrap();
    assert_eq!(live["data"], theirs["data"]);
    assert_eq!(live["metadata"]["labels"], theirs["metadata"]["labels"]);
    assert!(live["metadata"]["ownerReferences"].is_null(), "{live}");
    assert!(
        !h.api
            .writes()
            .iter()
            .any(|w| w.ends_with("/configmaps/llm-config")),
        "{:?}",
        h.api.writes()
    );
    assert!(
        h.api.get(DEPLOY).is_none(),
        "the Deployment would mount their ConfigMap"
    );
    assert_eq!(fs.status.as_ref().unwrap().replicas, Some(0));

    // Looked at again with backoff (the object in the way is not watched).
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(1))
    );
    assert_eq!(
        h.reconcile().await,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(2))
    );

    // Once they remove it, the FaasService gets its own.
    h.api.delete(CONFIGMAP);
    assert_eq!(
        h.reconcile().await,
        kube::runtime::controller::Action::requeue(faas_service::PROGRESS_RECHECK)
    );
    let ours = h.api.get(CONFIGMAP).expect("the ConfigMap is created");
    assert_eq!(
        ours["metadata"]["ownerReferences"][0]["kind"],
        "FaasService"
    );
    assert!(h.api.get(DEPLOY).is_some());
    assert_ne!(h.condition(READY).1, "ChildConflict");
}

#[tokio::test]
async fn a_child_of_an_earlier_faas_service_of_the_same_name_is_not_adopted() {
    let h = Harness::new().with_secrets();
    h.api.put(
        DEPLOY,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "llm", "namespace": NS, "ownerReferences": [{
                "apiVersion": "faas.motadata.io/v1alpha1", "kind": "FaasService", "name": "llm",
                "uid": "uid-of-the-deleted-one", "controller": true, "blockOwnerDeletion": true,
            }]},
            "spec": {"replicas": 5},
        }),
    );
    h.create(json!({"component": "gateway", "replicas": 1}));
    h.reconcile().await;
    let fs = h.current();
    let ready = find(&fs.status.as_ref().unwrap().conditions, READY).unwrap();
    assert_eq!(ready.reason, "ChildConflict");
    assert!(
        ready.message.contains("Deployment llm")
            && ready
                .message
                .contains("FaasService llm (uid uid-of-the-deleted-one)"),
        "{}",
        ready.message
    );
    let live = h.api.get(DEPLOY).unwrap();
    assert_eq!(live["spec"]["replicas"], 5);
    assert_eq!(
        live["metadata"]["ownerReferences"][0]["uid"],
        "uid-of-the-deleted-one"
    );
}

#[tokio::test]
async fn a_service_deleted_while_it_is_reconciled_is_no_failure() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway", "replicas": 1}));
    let fs = h.current();
    // The reconcile works from the copy it was handed; the object is gone from the API
    // server by the time the status is written.
    h.api.delete(FS_PATH);
    let action = faas_service::reconcile(Arc::new(fs), h.ctx.clone())
        .await
        .expect("a deleted service is no failure");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn missing_secret_is_reported_and_waits() {
    let h = Harness::new();
    h.create(json!({"component": "gateway"}));
    let action = h.reconcile().await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(faas_service::INVALID_RECHECK)
    );
    assert!(
        h.api.get(DEPLOY).is_none(),
        "nothing is built from an invalid spec"
    );
    assert_eq!(
        h.condition(READY),
        ("False".into(), "SecretNotFound".into())
    );
    let msg = find(&h.current().status.unwrap().conditions, READY)
        .unwrap()
        .message
        .clone();
    assert!(msg.contains("team-a/faas-database does not exist"), "{msg}");
    assert!(
        h.api
            .writes()
            .iter()
            .any(|w| w.starts_with("POST") && w.contains("/events"))
    );

    // Checked again later: still missing, so nothing more is written (no event storm).
    h.api.clear_calls();
    h.reconcile().await;
    assert_eq!(h.api.writes(), Vec::<String>::new());

    // Once the Secrets exist the service is built.
    let h2 = Harness {
        api: h.api.clone(),
        ctx: h.ctx.clone(),
    }
    .with_secrets();
    h2.reconcile().await;
    assert!(h2.api.get(DEPLOY).is_some());
    assert_eq!(
        h2.condition(DEGRADED),
        ("False".into(), "AsExpected".into())
    );
}

#[tokio::test]
async fn missing_dependency_is_reported() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "agent", "dependsOn": [{"name": "gateway"}]}));
    h.reconcile().await;
    assert_eq!(
        h.condition(READY),
        ("False".into(), "DependencyNotFound".into())
    );
    assert!(h.api.get(DEPLOY).is_none());
}

#[tokio::test]
async fn manual_edit_of_a_managed_field_is_put_back() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "cache", "replicas": 1}));
    h.reconcile().await;
    h.api.edit(DEPLOY, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest")
    });
    h.api.clear_calls();
    h.reconcile().await;
    assert_eq!(
        h.api.writes().first().map(String::as_str),
        Some(&*format!("PATCH {DEPLOY}"))
    );
    assert_eq!(
        h.api.get(DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "motadata/faas-runtime:0.1.0"
    );
}

#[tokio::test]
async fn failing_pods_make_it_degraded() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway", "replicas": 1}));
    h.reconcile().await;
    h.api.put(
        &format!("/api/v1/namespaces/{NS}/pods/llm-abc"),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "llm-abc", "namespace": NS, "labels": {"app.kubernetes.io/name": "faas-runtime", "app.kubernetes.io/instance": "llm"}},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "runtime", "ready": false, "restartCount": 4, "image": "x", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}
            }]}
        }),
    );
    h.reconcile().await;
    assert_eq!(h.condition(DEGRADED), ("True".into(), "PodsFailing".into()));
    assert_eq!(h.condition(READY), ("False".into(), "PodsFailing".into()));
    let msg = find(&h.current().status.unwrap().conditions, DEGRADED)
        .unwrap()
        .message
        .clone();
    assert!(msg.contains("CrashLoopBackOff"), "{msg}");
}

#[tokio::test]
async fn paused_changes_nothing_but_reports() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway", "replicas": 1}));
    h.reconcile().await;
    h.update_spec(|s| {
        s["paused"] = json!(true);
        s["replicas"] = json!(3);
    });
    h.api.clear_calls();
    h.reconcile().await;
    let writes = h.api.writes();
    assert!(
        writes
            .iter()
            .all(|w| w.ends_with("/status") || w.contains("/events")),
        "{writes:?}"
    );
    assert_eq!(h.api.get(DEPLOY).unwrap()["spec"]["replicas"], 1);
    assert_eq!(h.condition(PROGRESSING), ("False".into(), "Paused".into()));

    h.update_spec(|s| s["paused"] = json!(false));
    h.reconcile().await;
    assert_eq!(h.api.get(DEPLOY).unwrap()["spec"]["replicas"], 3);
}

#[tokio::test]
async fn a_service_being_deleted_is_left_to_the_garbage_collector() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "gateway", "replicas": 1}));
    h.reconcile().await;
    h.api.edit(DEPLOY, |d| d["spec"]["replicas"] = json!(0));
    h.api.edit(FS_PATH, |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-11-26T10:00:00Z");
        o["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    });
    h.api.clear_calls();
    let action = h.reconcile().await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert_eq!(h.api.writes(), Vec::<String>::new());
}

#[tokio::test]
async fn under_an_autoscaler_the_rollout_completes_at_min_replicas() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "rag", "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}));
    h.reconcile().await;
    // The API server defaults the new Deployment to one replica; the HPA has not acted yet.
    h.api.edit(DEPLOY, |d| d["spec"]["replicas"] = json!(1));
    h.deployment_ready();
    h.reconcile().await;
    assert_eq!(h.condition(READY), ("True".into(), "Available".into()));
    assert_eq!(
        h.condition(PROGRESSING),
        ("True".into(), "RollingOut".into())
    );

    h.api.edit(DEPLOY, |d| d["spec"]["replicas"] = json!(2));
    h.deployment_ready();
    h.reconcile().await;
    assert_eq!(
        h.condition(PROGRESSING),
        ("False".into(), "RolloutComplete".into())
    );
    assert_eq!(h.current().status.unwrap().ready_replicas, Some(2));
}

#[tokio::test]
async fn an_agent_service_follows_the_secret_keys_its_agents_name() {
    let h = Harness::new().with_secrets();
    h.create(json!({"component": "agent", "replicas": 1}));
    let agent = |name: &str, service: &str, key: &str| {
        h.api.put(
            &format!("/apis/faas.motadata.io/v1alpha1/namespaces/{NS}/agents/{name}"),
            json!({"apiVersion": "faas.motadata.io/v1alpha1", "kind": "Agent",
                   "metadata": {"name": name, "namespace": NS, "generation": 1},
                   "spec": {"model": {"provider": "openai", "name": "gpt-4o-mini"},
                            "systemPrompt": "Help.", "serviceRef": {"name": service},
                            "tools": [{"name": "call", "type": "http", "http": {
                                "url": "https://api.example.com",
                                "headers": [{"name": "Authorization",
                                             "secretKeyRef": {"name": "helpdesk-api", "key": key}}]}}]}}),
        )
    };
    let items = |h: &Harness| {
        let d = h.api.get(DEPLOY).unwrap();
        d["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "agent-secrets")
            .map(|v| v["projected"]["sources"][0]["secret"]["items"].clone())
    };
    agent("helper", "llm", "authorization");
    agent("other", "elsewhere", "other-key");
    h.reconcile().await;
    assert_eq!(
        items(&h),
        Some(json!([{"key": "authorization", "path": "team-a/helpdesk-api/authorization"}]))
    );
    assert!(
        !h.api
            .calls()
            .iter()
            .any(|c| c.path.contains("/secrets/helpdesk-api")),
        "the operator never reads the Secret the pods mount"
    );

    h.deployment_ready();
    h.reconcile().await;
    h.api.clear_calls();
    h.reconcile().await;
    assert_eq!(h.api.writes(), Vec::<String>::new(), "unchanged: no write");

    agent("helper", "llm", "refresh");
    h.reconcile().await;
    assert_eq!(h.api.writes().first(), Some(&format!("PATCH {DEPLOY}")));
    assert_eq!(
        items(&h),
        Some(json!([{"key": "refresh", "path": "team-a/helpdesk-api/refresh"}]))
    );

    // Moved to another service: nothing left to mount here.
    agent("helper", "elsewhere", "refresh");
    h.reconcile().await;
    assert_eq!(items(&h), None);
    let d = h.api.get(DEPLOY).unwrap();
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(!env.iter().any(|e| e["name"] == "FAAS_AGENT_SECRETS_DIR"));
}
