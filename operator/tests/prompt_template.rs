//! The PromptTemplate controller: pure validation from YAML fixtures, and the reconcile
//! against the in-memory API server, with and without a real Postgres.

mod support;

use std::sync::Arc;
use std::time::Duration;

use faas_crds::PromptTemplate;
use faas_crds::conditions::{READY, SYNCED, VALID, find};
use faas_operator::metrics::Metrics;
use faas_operator::prompt_template::{self, Context, FINALIZER, validate};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use support::FakeApi;

const NS: &str = "team-a";
const PT: &str = "/apis/faas.motadata.io/v1alpha1/namespaces/team-a/prompttemplates/support";
const AGENTS: &str = "/apis/faas.motadata.io/v1alpha1/namespaces/team-a/agents";

fn template(spec: Value) -> PromptTemplate {
    serde_json::from_value(json!({
        "apiVersion": "faas.motadata.io/v1alpha1",
        "kind": "PromptTemplate",
        "metadata": {"name": "support", "namespace": NS, "generation": 1, "uid": "pt-uid"},
        "spec": spec,
    }))
    .expect("a PromptTemplate")
}

fn yaml(text: &str) -> PromptTemplate {
    template(serde_yaml::from_str(text).expect("YAML"))
}

fn greeting() -> Value {
    json!({
        "template": "Hello {{ name }}, welcome to {{ company }}.",
        "variables": [{"name": "name", "type": "string"}, {"name": "company", "default": "Motadata"}]
    })
}

#[test]
fn a_template_that_does_not_parse_reports_line_and_column() {
    let pt = yaml("template: \"line one\\nHello {{ name \"\nvariables: [{name: name}]\n");
    let invalid = validate::validate(&pt).unwrap_err();
    assert_eq!(invalid.reason, "TemplateSyntaxError");
    let e = &invalid.errors[0];
    assert_eq!(e.location, "template");
    assert_eq!(e.line, Some(2), "{e:?}");
    assert!(e.column.is_some(), "{e:?}");
    assert!(
        invalid.message.starts_with("spec.template (line 2"),
        "{}",
        invalid.message
    );
}

#[test]
fn undeclared_unused_and_wrongly_typed_variables_are_told_apart() {
    let undeclared = yaml("template: '{{ who }} {{ what }}'\nvariables: [{name: who}]\n");
    let invalid = validate::validate(&undeclared).unwrap_err();
    assert_eq!(invalid.reason, "UndeclaredVariables");
    assert!(invalid.message.contains("what"), "{}", invalid.message);

    let wrong_default =
        yaml("template: '{{ words }}'\nvariables: [{name: words, type: integer, default: many}]\n");
    let invalid = validate::validate(&wrong_default).unwrap_err();
    assert_eq!(invalid.reason, "InvalidDefault");
    assert_eq!(invalid.errors[0].location, "variables[0].default");

    let unused = yaml(
        "template: 'Hi {{ who }}'\nvariables: [{name: who}, {name: spare, required: false}]\n",
    );
    let valid = validate::validate(&unused).unwrap();
    assert_eq!(valid.unused, ["spare"]);
    assert_eq!(valid.tenant, NS);
    assert_eq!(valid.content_hash, unused.spec.content().content_hash());
}

#[test]
fn odd_tenants_and_floods_of_problems_end_as_bounded_conditions() {
    for tenant in ["Team A", "a/b", "ünïcode", "-lead", &"x".repeat(64), ""] {
        let mut spec = greeting();
        spec["tenant"] = json!(tenant);
        let invalid = validate::validate(&template(spec)).unwrap_err();
        assert_eq!(invalid.reason, "InvalidTenant", "{tenant:?}");
        assert!(invalid.message.chars().count() < 300);
    }
    // 128 variables, all undeclared in a huge template: the status stays small.
    let body: String = (0..2000).map(|i| format!("{{{{ v{i} }}}}")).collect();
    let spec = json!({"template": body, "messages": null, "variables": []});
    let invalid = validate::validate(&template(spec)).unwrap_err();
    assert!(invalid.errors.len() <= validate::MAX_ERRORS);
    assert!(
        invalid
            .errors
            .iter()
            .all(|e| e.message.chars().count() <= validate::MAX_ERROR_MESSAGE + 1)
    );
    assert!(invalid.message.len() < 4 * validate::MAX_ERROR_MESSAGE);
}

struct Harness {
    api: FakeApi,
    ctx: Arc<Context>,
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
        ));
        Self { api, ctx }
    }

    fn create(&self, spec: Value) {
        self.api
            .put(PT, serde_json::to_value(template(spec)).unwrap());
    }

    fn update_spec(&self, spec: Value) {
        self.api.edit(PT, |o| {
            o["spec"] = spec;
            let g = o["metadata"]["generation"].as_i64().unwrap();
            o["metadata"]["generation"] = json!(g + 1);
        });
    }

    fn current(&self) -> Option<PromptTemplate> {
        self.api.get(PT).map(|v| serde_json::from_value(v).unwrap())
    }

    async fn reconcile(&self) -> Action {
        let pt = self.current().expect("the PromptTemplate exists");
        prompt_template::reconcile(Arc::new(pt), self.ctx.clone())
            .await
            .expect("reconcile succeeds")
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let pt = self.current().unwrap();
        let c = find(&pt.status.as_ref().unwrap().conditions, type_)
            .unwrap_or_else(|| panic!("{type_} is set"))
            .clone();
        (c.status, c.reason, c.message)
    }

    fn add_agent(&self, name: &str, template: &str) {
        self.api.put(
            &format!("{AGENTS}/{name}"),
            json!({
                "apiVersion": "faas.motadata.io/v1alpha1", "kind": "Agent",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"model": {"provider": "openai", "name": "gpt-4o-mini"},
                         "promptTemplateRef": {"name": template}, "serviceRef": {"name": "agents"}},
            }),
        );
    }

    fn delete(&self) {
        self.api.edit(PT, |o| {
            o["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        });
    }
}

async fn rows(pool: &sqlx::PgPool, tenant: &str) -> Vec<(i32, String, bool)> {
    sqlx::query_as(
        "SELECT version, source, retired_at IS NOT NULL FROM prompt_templates \
         WHERE tenant_id = $1 AND name = 'support' ORDER BY version",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn without_a_database_the_template_is_checked_and_says_it_is_not_published() {
    let h = Harness::new(None);
    h.create(greeting());
    assert_eq!(
        h.reconcile().await,
        Action::requeue(prompt_template::RESYNC)
    );
    assert_eq!(h.condition(VALID).0, "True");
    let (status, reason, message) = h.condition(SYNCED);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NoDatabase"));
    assert!(message.contains("FAAS_OPERATOR_DATABASE_URL"), "{message}");
    assert_eq!(h.condition(READY).0, "False");
    // No finalizer: there is nothing to clean up.
    assert!(h.current().unwrap().metadata.finalizers.is_none());

    // Steady state: a second reconcile writes nothing.
    h.api.clear_calls();
    h.reconcile().await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
}

#[tokio::test]
async fn invalid_content_is_reported_with_its_problems() {
    let h = Harness::new(None);
    h.create(json!({"template": "{% if x %}never closed", "variables": [{"name": "x"}]}));
    h.reconcile().await;
    let (status, reason, _) = h.condition(VALID);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TemplateSyntaxError")
    );
    let errors = h.current().unwrap().status.unwrap().errors;
    assert_eq!(errors[0].location, "template");
    assert!(
        errors[0].line.is_some() && errors[0].column.is_some(),
        "{errors:?}"
    );
    assert_eq!(h.condition(SYNCED).1, "InvalidContent");

    // Fixed: the errors go, the Valid condition turns true.
    h.update_spec(greeting());
    h.reconcile().await;
    assert_eq!(h.condition(VALID).0, "True");
    assert!(h.current().unwrap().status.unwrap().errors.is_empty());
}

#[tokio::test]
async fn publishes_versions_only_when_the_content_changes_and_cleans_up_on_delete() {
    let Some(pool) = support::database().await else {
        return;
    };
    let h = Harness::new(Some(pool.clone()));
    h.create(greeting());
    h.reconcile().await;
    let pt = h.current().unwrap();
    assert_eq!(pt.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    let status = pt.status.clone().unwrap();
    assert_eq!(status.version, Some(1));
    assert_eq!(status.content_hash, Some(pt.spec.content().content_hash()));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(h.condition(SYNCED).1, "Published");
    assert_eq!(h.condition(READY).0, "True");
    assert_eq!(rows(&pool, NS).await, [(1, "resource".into(), false)]);
    let (stored_hash, created_by): (String, Option<String>) = sqlx::query_as(
        "SELECT content_hash, created_by FROM prompt_templates WHERE tenant_id = $1 AND name = 'support'",
    )
    .bind(NS)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(Some(stored_hash), status.content_hash);
    assert_eq!(created_by.as_deref(), Some("prompttemplate:team-a/support"));

    // The same content again: no row, no write to the API server.
    let ready_since = find(&status.conditions, READY)
        .unwrap()
        .last_transition_time
        .clone();
    h.api.clear_calls();
    h.reconcile().await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
    assert_eq!(rows(&pool, NS).await.len(), 1);

    // A change of the content (not of the description alone) is a new version.
    let mut changed = greeting();
    changed["template"] = json!("Hi {{ name }} from {{ company }}!");
    h.update_spec(changed);
    h.reconcile().await;
    let status = h.current().unwrap().status.unwrap();
    assert_eq!(status.version, Some(2));
    assert_eq!(status.observed_generation, Some(2));
    let ready = find(&status.conditions, READY).unwrap();
    assert_eq!(ready.last_transition_time, ready_since, "Ready stayed True");
    assert_eq!(rows(&pool, NS).await.len(), 2);

    // Deleting while an Agent references it: rows kept, retired, and the condition says why.
    h.add_agent("helper", "support");
    h.add_agent("other", "something-else");
    h.delete();
    h.reconcile().await;
    let (status, reason, message) = h.condition(READY);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InUse"));
    assert!(
        message.contains("helper") && !message.contains("other"),
        "{message}"
    );
    assert!(rows(&pool, NS).await.iter().all(|(_, _, retired)| *retired));
    assert!(h.current().is_some(), "the finalizer holds the resource");

    // The Agent lets go: rows deleted, finalizer removed, the resource goes.
    h.api.edit(&format!("{AGENTS}/helper"), |a| {
        a["spec"]["promptTemplateRef"] = Value::Null;
        a["spec"]["systemPrompt"] = json!("inline");
    });
    h.reconcile().await;
    assert!(rows(&pool, NS).await.is_empty());
    assert!(h.current().is_none(), "deleted once the finalizer is gone");
}

#[tokio::test]
async fn a_name_made_through_the_prompt_api_is_not_overwritten() {
    let Some(pool) = support::database().await else {
        return;
    };
    sqlx::query(
        "INSERT INTO prompt_templates (tenant_id, name, version, template, variables, source, content_hash) \
         VALUES ('team-a', 'support', 1, 'mine', '[]', 'api', 'h')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let h = Harness::new(Some(pool.clone()));
    h.create(greeting());
    h.reconcile().await;
    let (status, reason, _) = h.condition(SYNCED);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NameTaken"));
    assert_eq!(rows(&pool, NS).await, [(1, "api".into(), false)]);
    // Deleting the resource leaves the API's template alone.
    h.delete();
    h.reconcile().await;
    assert!(h.current().is_none());
    assert_eq!(rows(&pool, NS).await, [(1, "api".into(), false)]);
}

#[tokio::test]
async fn a_named_tenant_gets_the_rows() {
    let Some(pool) = support::database().await else {
        return;
    };
    let h = Harness::new(Some(pool.clone()));
    let mut spec = greeting();
    spec["tenant"] = json!("acme");
    h.create(spec);
    h.reconcile().await;
    assert_eq!(rows(&pool, "acme").await.len(), 1);
    assert!(rows(&pool, NS).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_database_is_a_condition_and_a_growing_backoff() {
    // Nothing listens on port 1: every connection is refused.
    let pool = faas_operator::kit::database::pool("postgres://faas:pw@127.0.0.1:1/faas").unwrap();
    let h = Harness::new(Some(pool));
    h.create(greeting());
    let first = h.reconcile().await;
    let (status, reason, message) = h.condition(SYNCED);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "DatabaseUnavailable")
    );
    assert!(!message.contains("pw@"), "{message}");
    assert_eq!(h.condition(VALID).0, "True");
    let second = h.reconcile().await;
    assert_eq!(first, Action::requeue(Duration::from_secs(1)));
    assert_eq!(second, Action::requeue(Duration::from_secs(2)));
    // The status says the same thing: the second failure wrote nothing but the finalizer check.
    h.api.clear_calls();
    h.reconcile().await;
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());
}

#[tokio::test]
async fn a_template_of_another_namespace_naming_the_tenant_is_neither_overwritten_nor_deleted() {
    let Some(pool) = support::database().await else {
        return;
    };
    sqlx::query(
        "INSERT INTO prompt_templates (tenant_id, name, version, template, variables, source, \
         content_hash, created_by) \
         VALUES ('team-a', 'support', 1, 'theirs', '[]', 'resource', 'h', 'prompttemplate:team-b/support')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let h = Harness::new(Some(pool.clone()));
    h.create(greeting());
    h.reconcile().await;
    let (status, reason, _) = h.condition(SYNCED);
    assert_eq!((status.as_str(), reason.as_str()), ("False", "NameTaken"));
    assert_eq!(rows(&pool, NS).await, [(1, "resource".into(), false)]);
    // Deleting this resource neither retires nor deletes the other namespace's versions.
    h.delete();
    h.reconcile().await;
    assert!(h.current().is_none());
    assert_eq!(rows(&pool, NS).await, [(1, "resource".into(), false)]);
}
