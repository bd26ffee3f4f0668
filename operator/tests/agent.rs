//! The Agent controller: references resolved against the in-memory API server, and the row
//! in a real Postgres (row-level security on, as the runtime's migration sets it).

mod support;

use std::sync::Arc;

use faas_crds::Agent;
use faas_crds::conditions::{READY, REFERENCES_RESOLVED, SYNCED, find};
use faas_operator::agent::{self, Context, FINALIZER};
use faas_operator::metrics::Metrics;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use support::FakeApi;

const NS: &str = "team-a";
const GROUP: &str = "/apis/faas.motadata.io/v1alpha1/namespaces/team-a";
const SECRET_VALUE: &str = "s3cr3t-token-value";

struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
}

fn agent_path(name: &str) -> String {
    format!("{GROUP}/agents/{name}")
}

impl Harness {
    fn new(db: Option<sqlx::PgPool>) -> Self {
        let (client, api) = FakeApi::start();
        let reporter = Reporter {
            controller: "faas-operator".into(),
            instance: Some("test".into()),
        };
        let ctx = Arc::new(Context::new(
            client.clone(),
            Recorder::new(client, reporter),
            Metrics::default(),
            db,
            "cluster.local".into(),
        ));
        Self { api, ctx }
    }

    fn agent(&self, name: &str, spec: Value) {
        self.api.put(
            &agent_path(name),
            json!({"apiVersion": "faas.motadata.io/v1alpha1", "kind": "Agent",
                   "metadata": {"name": name, "namespace": NS, "generation": 1}, "spec": spec}),
        );
    }

    fn service(&self, component: &str, ready: bool) {
        self.api.put(
            &format!("{GROUP}/faasservices/agents"),
            json!({"apiVersion": "faas.motadata.io/v1alpha1", "kind": "FaasService",
                   "metadata": {"name": "agents", "namespace": NS, "generation": 1},
                   "spec": {"component": component},
                   "status": {"url": "http://agents.team-a.svc.cluster.local",
                              "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                              "reason": "x", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
    }

    fn template(&self, version: Option<i64>) {
        let status = match version {
            Some(v) => json!({"version": v}),
            None => json!({}),
        };
        self.api.put(
            &format!("{GROUP}/prompttemplates/support"),
            json!({"apiVersion": "faas.motadata.io/v1alpha1", "kind": "PromptTemplate",
                   "metadata": {"name": "support", "namespace": NS, "generation": 1},
                   "spec": {"template": "Hi"}, "status": status}),
        );
    }

    fn secret(&self, name: &str, key: &str) {
        self.api.put(
            &format!("/api/v1/namespaces/{NS}/secrets/{name}"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
                   "stringData": {key: SECRET_VALUE}}),
        );
    }

    fn current(&self, name: &str) -> Option<Agent> {
        self.api
            .get(&agent_path(name))
            .map(|v| serde_json::from_value(v).unwrap())
    }

    async fn reconcile(&self, name: &str) -> Action {
        let a = self.current(name).expect("the Agent exists");
        agent::reconcile(Arc::new(a), self.ctx.clone())
            .await
            .expect("reconcile succeeds")
    }

    fn condition(&self, name: &str, type_: &str) -> (String, String, String) {
        let a = self.current(name).unwrap();
        let c = find(&a.status.as_ref().unwrap().conditions, type_)
            .unwrap_or_else(|| panic!("{type_} is set"))
            .clone();
        (c.status, c.reason, c.message)
    }
}

fn spec() -> Value {
    json!({
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "promptTemplateRef": {"name": "support", "variables": {"company": "Motadata"}},
        "serviceRef": {"name": "agents"},
        "tools": [
            {"name": "tickets", "type": "http", "http": {"url": "https://helpdesk.example.com/api",
             "headers": [{"name": "Authorization", "secretKeyRef": {"name": "helpdesk", "key": "token"}}]}},
            {"name": "search", "type": "rag", "rag": {"collections": ["docs"]}},
        ],
    })
}

async fn stored(
    pool: &sqlx::PgPool,
    tenant: &str,
    name: &str,
) -> Option<(String, i32, Option<i32>, Value)> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    // By name only: row-level security alone keeps the other tenants' rows out.
    sqlx::query_as(
        "SELECT source, revision, prompt_template_version, definition FROM agents WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_missing_reference_is_named_and_resolves_when_it_appears() {
    let h = Harness::new(None);
    h.agent("helper", spec());
    assert_eq!(
        h.reconcile("helper").await,
        Action::requeue(agent::UNRESOLVED_RECHECK)
    );
    let (status, reason, message) = h.condition("helper", REFERENCES_RESOLVED);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PromptTemplateNotFound")
    );
    assert!(message.contains("FaasService team-a/agents"), "{message}");
    assert!(message.contains("Secret team-a/helpdesk"), "{message}");
    assert_eq!(h.condition("helper", READY).0, "False");

    h.template(None);
    h.service("gateway", true);
    h.secret("helpdesk", "other");
    h.reconcile("helper").await;
    let (_, reason, message) = h.condition("helper", REFERENCES_RESOLVED);
    assert_eq!(reason, "PromptTemplateNotReady", "{message}");
    assert!(message.contains("component is gateway"), "{message}");
    assert!(message.contains("no key \"token\""), "{message}");

    h.template(Some(3));
    h.service("agent", true);
    h.secret("helpdesk", "token");
    h.reconcile("helper").await;
    assert_eq!(h.condition("helper", REFERENCES_RESOLVED).0, "True");
    // Without a database: resolved, but not published.
    let (status, reason, _) = h.condition("helper", SYNCED);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoDatabase"));
    let text = serde_json::to_string(&h.current("helper").unwrap()).unwrap();
    assert!(
        !text.contains(SECRET_VALUE),
        "a Secret value reached the Agent"
    );
}

#[tokio::test]
async fn hostile_references_end_as_conditions() {
    let h = Harness::new(None);
    h.service("agent", true);
    let mut s = spec();
    s["promptTemplateRef"] = Value::Null;
    s["systemPrompt"] = json!("You help.");
    s["tools"][0]["http"]["headers"][0]["secretKeyRef"]["name"] = json!("kube-system/admin-token");
    h.agent("elsewhere", s.clone());
    h.reconcile("elsewhere").await;
    let (_, reason, message) = h.condition("elsewhere", SYNCED);
    assert_eq!(reason, "InvalidDefinition");
    assert!(message.contains("secretKeyRef.name"), "{message}");

    s["tools"][0]["http"]["headers"][0]["secretKeyRef"]["name"] = json!("helpdesk");
    h.secret("helpdesk", "token");
    s["tools"][1] = json!({"name": "me", "type": "agent", "agent": {"name": "helper"}});
    s["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "ghost", "type": "agent", "agent": {"name": "ghost"}}));
    h.agent("helper", s);
    h.reconcile("helper").await;
    let (_, reason, message) = h.condition("helper", REFERENCES_RESOLVED);
    assert_eq!(reason, "InvalidReference");
    assert!(message.contains("its own tool"), "{message}");
    assert!(message.contains("Agent team-a/ghost"), "{message}");
    // Nothing outside the namespace was read.
    assert!(
        h.api
            .calls()
            .iter()
            .all(|c| c.path.contains("/namespaces/team-a/")),
        "{:?}",
        h.api.calls()
    );

    let mut s = spec();
    s["tenant"] = json!("Robert'); DROP TABLE agents;--");
    s["rag"] = json!({"collections": ["../../etc"]});
    h.agent("odd", s);
    h.reconcile("odd").await;
    let (_, reason, _) = h.condition("odd", SYNCED);
    assert_eq!(reason, "InvalidTenant");

    let mut s = spec();
    s["rag"] = json!({"collections": ["../../etc"]});
    s["systemPrompt"] = json!("x".repeat(70_000));
    s["promptTemplateRef"] = Value::Null;
    h.agent("long", s);
    h.reconcile("long").await;
    let (_, reason, message) = h.condition("long", SYNCED);
    assert_eq!(reason, "InvalidDefinition");
    assert!(
        message.contains("rag.collections[0]") && message.contains("systemPrompt"),
        "{message}"
    );
    assert!(message.len() < 2000);
}

#[tokio::test]
async fn stores_the_definition_follows_the_template_version_and_deletes_the_row() {
    let Some(pool) = support::database().await else {
        return;
    };
    let h = Harness::new(Some(pool.clone()));
    h.template(Some(1));
    h.service("agent", false);
    h.secret("helpdesk", "token");
    h.agent("helper", spec());
    h.reconcile("helper").await;
    let a = h.current("helper").unwrap();
    assert_eq!(a.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    let status = a.status.clone().unwrap();
    assert_eq!(status.prompt_template_version, Some(1));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://agents.team-a.svc.cluster.local/v1/agents/helper/invoke")
    );
    assert_eq!(h.condition("helper", SYNCED).1, "Published");
    assert_eq!(h.condition("helper", READY).1, "ServiceNotReady");
    let (source, revision, ptv, definition) = stored(&pool, NS, "helper").await.expect("a row");
    assert_eq!((source.as_str(), revision, ptv), ("resource", 1, Some(1)));
    assert_eq!(definition["promptTemplateRef"]["name"], "support");
    assert_eq!(
        definition["tools"][0]["http"]["headers"][0]["secretKeyRef"]["key"],
        "token"
    );
    assert!(!definition.to_string().contains(SECRET_VALUE));
    let id: uuid::Uuid = status.agent_id.as_deref().unwrap().parse().unwrap();
    // Row-level security: another tenant sees nothing.
    assert!(stored(&pool, "team-b", "helper").await.is_none());

    // The service becomes Ready; nothing else changes: no row write.
    h.service("agent", true);
    h.reconcile("helper").await;
    assert_eq!(h.condition("helper", READY).0, "True");
    h.api.clear_calls();
    h.reconcile("helper").await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    assert_eq!(stored(&pool, NS, "helper").await.unwrap().1, 1);

    // The template publishes version 2: the agent follows, without a new revision.
    h.template(Some(2));
    h.reconcile("helper").await;
    assert_eq!(
        h.current("helper")
            .unwrap()
            .status
            .unwrap()
            .prompt_template_version,
        Some(2)
    );
    let (_, revision, ptv, _) = stored(&pool, NS, "helper").await.unwrap();
    assert_eq!((revision, ptv), (1, Some(2)));

    // The definition changes: a new revision, the same id.
    h.api.edit(&agent_path("helper"), |a| {
        a["spec"]["maxIterations"] = json!(3);
        a["metadata"]["generation"] = json!(2);
    });
    h.reconcile("helper").await;
    assert_eq!(stored(&pool, NS, "helper").await.unwrap().1, 2);
    let status = h.current("helper").unwrap().status.unwrap();
    assert_eq!(status.agent_id, Some(id.to_string()));
    assert_eq!(status.observed_generation, Some(2));

    // Deleted: the row goes, then the resource.
    h.api.edit(&agent_path("helper"), |a| {
        a["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    });
    h.reconcile("helper").await;
    assert!(stored(&pool, NS, "helper").await.is_none());
    assert!(h.current("helper").is_none());
}

#[tokio::test]
async fn an_agent_made_through_the_api_is_not_overwritten() {
    let Some(pool) = support::database().await else {
        return;
    };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('faas.tenant_id', 'team-a', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO agents (tenant_id, name, definition, content_hash) VALUES ('team-a', 'helper', '{}', 'h')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let h = Harness::new(Some(pool.clone()));
    h.template(Some(1));
    h.service("agent", true);
    h.secret("helpdesk", "token");
    h.agent("helper", spec());
    h.reconcile("helper").await;
    let (status, reason, _) = h.condition("helper", SYNCED);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NameTaken"));
    assert_eq!(stored(&pool, NS, "helper").await.unwrap().0, "api");
}

#[tokio::test]
async fn an_agent_of_another_namespace_naming_the_tenant_is_neither_overwritten_nor_deleted() {
    let Some(pool) = support::database().await else {
        return;
    };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('faas.tenant_id', 'team-a', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO agents (tenant_id, name, definition, source, content_hash, created_by) \
         VALUES ('team-a', 'helper', '{\"theirs\": true}', 'resource', 'h', 'agent:team-b/helper')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let h = Harness::new(Some(pool.clone()));
    h.template(Some(1));
    h.service("agent", true);
    h.secret("helpdesk", "token");
    h.agent("helper", spec());
    h.reconcile("helper").await;
    let (status, reason, _) = h.condition("helper", SYNCED);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NameTaken"));
    let theirs = stored(&pool, NS, "helper").await.unwrap();
    assert_eq!((theirs.1, theirs.3), (1, json!({"theirs": true})));

    // Deleting this Agent leaves the other namespace's row alone.
    h.api.edit(&agent_path("helper"), |a| {
        a["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    });
    h.reconcile("helper").await;
    assert!(h.current("helper").is_none());
    assert_eq!(
        stored(&pool, NS, "helper").await.unwrap().3,
        json!({"theirs": true})
    );
}
