//! PromptTemplates and Agents published to a real Postgres with the runtime's schema: rows,
//! versions that follow, references that resolve when their target appears, deletion, and a
//! database that goes away and comes back.

use faas_crds::{Agent, PromptTemplate};
use faas_e2e::{Database, Relay, TestNs, WAIT, wait_for};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::common::*;

const LEASE: &str = "faas-operator-e2e";

async fn create<K>(ns: &TestNs, kind: &str, name: &str, spec: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(json!({
        "apiVersion": "faas.motadata.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("a {kind}: {e}"));
    ns.create(&obj).await
}

fn conditions(list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> String {
    list.iter()
        .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn status_of<'a>(
    list: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (&'a str, &'a str) {
    list.iter()
        .find(|c| c.type_ == type_)
        .map_or(("", ""), |c| (c.status.as_str(), c.reason.as_str()))
}

/// Waits until the PromptTemplate's status, for its current generation, satisfies `pred`.
async fn wait_pt(
    ns: &TestNs,
    name: &str,
    what: &str,
    pred: impl Fn(&PromptTemplate) -> bool,
) -> PromptTemplate {
    let api = ns.api::<PromptTemplate>();
    wait_for(&format!("PromptTemplate {name}: {what}"), WAIT, || async {
        let pt = api.get(name).await.map_err(|e| e.to_string())?;
        let status = pt.status.clone().unwrap_or_default();
        if status.observed_generation == pt.metadata.generation && pred(&pt) {
            Ok(pt)
        } else {
            Err(format!(
                "version={:?} {}",
                status.version,
                conditions(&status.conditions)
            ))
        }
    })
    .await
}

async fn wait_agent(ns: &TestNs, name: &str, what: &str, pred: impl Fn(&Agent) -> bool) -> Agent {
    let api = ns.api::<Agent>();
    wait_for(&format!("Agent {name}: {what}"), WAIT, || async {
        let a = api.get(name).await.map_err(|e| e.to_string())?;
        let status = a.status.clone().unwrap_or_default();
        if status.observed_generation == a.metadata.generation && pred(&a) {
            Ok(a)
        } else {
            Err(format!(
                "templateVersion={:?} {}",
                status.prompt_template_version,
                conditions(&status.conditions)
            ))
        }
    })
    .await
}

fn pt_has(pt: &PromptTemplate, type_: &str, status: &str, reason: &str) -> bool {
    let s = pt.status.clone().unwrap_or_default();
    let (st, re) = status_of(&s.conditions, type_);
    st == status && (reason.is_empty() || re == reason)
}

fn agent_has(a: &Agent, type_: &str, status: &str, reason: &str) -> bool {
    let s = a.status.clone().unwrap_or_default();
    let (st, re) = status_of(&s.conditions, type_);
    st == status && (reason.is_empty() || re == reason)
}

fn template_spec(text: &str) -> Value {
    json!({
        "template": text,
        "variables": [{"name": "company", "type": "string", "default": "Motadata"}]
    })
}

fn agent_spec(template: &str) -> Value {
    json!({
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "promptTemplateRef": {"name": template},
        "serviceRef": {"name": "agents"},
        "tools": [{"name": "search", "type": "rag", "rag": {"collections": ["docs"]}}],
    })
}

async fn template_versions(db: &Database, tenant: &str, name: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT version FROM prompt_templates WHERE tenant_id = $1 AND name = $2 AND source = 'resource' ORDER BY version",
    )
    .bind(tenant)
    .bind(name)
    .fetch_all(&db.pool)
    .await
    .expect("reading prompt_templates")
}

/// The agent's row as its tenant sees it (the table has row-level security).
async fn agent_row(db: &Database, tenant: &str, name: &str) -> Option<(String, Option<i32>)> {
    let mut tx = db.pool.begin().await.expect("a transaction");
    sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .expect("set_config");
    sqlx::query_as(
        "SELECT id::text, prompt_template_version FROM agents WHERE tenant_id = $1 AND name = $2",
    )
    .bind(tenant)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .expect("reading agents")
}

async fn wait_rows<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, WAIT, || async {
        if check().await {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    })
    .await
}

#[tokio::test]
async fn a_template_and_an_agent_are_published_follow_each_other_and_go_on_delete() {
    let ns = TestNs::new("publish").await;
    ns.create_backend_secrets().await;
    let db = Database::new().await;
    let op = ns
        .start_operator_with_database(LEASE, "op-publish", &db.url)
        .await;
    op.wait_ready().await;
    let tenant = ns.name.clone();

    create_fs(&ns, "agents", json!({"component": "agent"})).await;
    create::<PromptTemplate>(
        &ns,
        "PromptTemplate",
        "support",
        template_spec("You help {{ company }} customers."),
    )
    .await;
    create::<Agent>(&ns, "Agent", "helper", agent_spec("support")).await;

    let pt = wait_pt(&ns, "support", "Ready, version 1", |pt| {
        pt_has(pt, "Ready", "True", "Published") && pt.status.as_ref().unwrap().version == Some(1)
    })
    .await;
    assert!(pt_has(&pt, "Valid", "True", "Valid") && pt_has(&pt, "Synced", "True", ""));
    assert_eq!(
        pt.status.as_ref().unwrap().content_hash,
        Some(pt.spec.content().content_hash())
    );
    assert_eq!(template_versions(&db, &tenant, "support").await, [1]);

    let agent = wait_agent(&ns, "helper", "Ready with template version 1", |a| {
        agent_has(a, "Ready", "True", "")
            && a.status.as_ref().unwrap().prompt_template_version == Some(1)
    })
    .await;
    let status = agent.status.clone().unwrap();
    assert!(
        agent_has(&agent, "ReferencesResolved", "True", "")
            && agent_has(&agent, "Synced", "True", "")
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some(
            format!(
                "http://agents.{}.svc.cluster.local/v1/agents/helper/invoke",
                ns.name
            )
            .as_str()
        )
    );
    let (id, version) = agent_row(&db, &tenant, "helper")
        .await
        .expect("the agent's row");
    assert_eq!(Some(id), status.agent_id);
    assert_eq!(version, Some(1));

    // Touching the resource without changing the content adds no version.
    ns.api::<PromptTemplate>()
        .patch(
            "support",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("labelling the template");
    observe_for(std::time::Duration::from_secs(3)).await;
    assert_eq!(template_versions(&db, &tenant, "support").await, [1]);

    // A changed template: version 2, and the agent follows.
    ns.api::<PromptTemplate>()
        .patch(
            "support",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": "Help {{ company }}'s customers."}})),
        )
        .await
        .expect("changing the template");
    wait_pt(&ns, "support", "version 2", |pt| {
        pt.status.as_ref().unwrap().version == Some(2)
    })
    .await;
    wait_agent(&ns, "helper", "template version 2", |a| {
        a.status.as_ref().unwrap().prompt_template_version == Some(2)
    })
    .await;
    wait_rows("the agent's row follows the template", || async {
        agent_row(&db, &tenant, "helper").await.and_then(|r| r.1) == Some(2)
    })
    .await;
    assert_eq!(template_versions(&db, &tenant, "support").await, [1, 2]);

    // Deleting the template while the agent uses it waits, and says why.
    ns.api::<PromptTemplate>()
        .delete("support", &DeleteParams::default())
        .await
        .expect("deleting the template");
    let pt = wait_pt(&ns, "support", "deletion waits for the Agent", |pt| {
        pt_has(pt, "Ready", "False", "InUse")
    })
    .await;
    let message = &pt
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("helper"), "{message}");
    wait_agent(&ns, "helper", "the template is going", |a| {
        agent_has(a, "ReferencesResolved", "False", "PromptTemplateDeleting")
    })
    .await;

    // Deleting the agent lets both go, with their rows.
    ns.api::<Agent>()
        .delete("helper", &DeleteParams::default())
        .await
        .expect("deleting the agent");
    wait_gone::<Agent>(&ns, "helper").await;
    wait_gone::<PromptTemplate>(&ns, "support").await;
    assert!(agent_row(&db, &tenant, "helper").await.is_none());
    assert!(template_versions(&db, &tenant, "support").await.is_empty());
    drop(op);
}

#[tokio::test]
async fn a_broken_reference_is_a_condition_until_its_target_appears() {
    let ns = TestNs::new("refs").await;
    ns.create_backend_secrets().await;
    let db = Database::new().await;
    let op = ns
        .start_operator_with_database(LEASE, "op-refs", &db.url)
        .await;
    op.wait_ready().await;

    create::<Agent>(&ns, "Agent", "helper", agent_spec("later")).await;
    let a = wait_agent(&ns, "helper", "PromptTemplateNotFound", |a| {
        agent_has(a, "ReferencesResolved", "False", "PromptTemplateNotFound")
    })
    .await;
    let message = a
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "ReferencesResolved")
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains("later") && message.contains("agents"),
        "{message}"
    );
    assert!(agent_row(&db, &ns.name, "helper").await.is_none());

    // The targets appear: watched, so the Agent resolves without waiting for a recheck.
    create_fs(&ns, "agents", json!({"component": "agent"})).await;
    create::<PromptTemplate>(
        &ns,
        "PromptTemplate",
        "later",
        template_spec("Hi from {{ company }}"),
    )
    .await;
    let started = std::time::Instant::now();
    wait_agent(&ns, "helper", "resolved and stored", |a| {
        agent_has(a, "ReferencesResolved", "True", "") && agent_has(a, "Synced", "True", "")
    })
    .await;
    // The Agent's recheck of unresolved references is a minute away: this was the watch.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "resolved by a watch, not a recheck"
    );
    assert!(agent_row(&db, &ns.name, "helper").await.is_some());

    // A template that does not parse: a condition with line and column.
    create::<PromptTemplate>(
        &ns,
        "PromptTemplate",
        "broken",
        json!({"template": "Hi\n{{ company "}),
    )
    .await;
    let pt = wait_pt(&ns, "broken", "Valid=False", |pt| {
        pt_has(pt, "Valid", "False", "TemplateSyntaxError")
    })
    .await;
    let errors = pt.status.unwrap().errors;
    assert_eq!(errors[0].line, Some(2), "{errors:?}");
    assert!(template_versions(&db, &ns.name, "broken").await.is_empty());
    drop(op);
}

#[tokio::test]
async fn an_unreachable_database_is_a_condition_and_publishing_resumes_when_it_returns() {
    let ns = TestNs::new("dbdown").await;
    let db = Database::new().await;
    let target = db
        .url
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("host:port")
        .to_string();
    let mut relay = Relay::start(&target).await;
    let via_relay = db
        .url
        .replace(&target, &format!("127.0.0.1:{}", relay.port));
    let op = ns
        .start_operator_with_database(LEASE, "op-dbdown", &via_relay)
        .await;
    op.wait_ready().await;

    create::<PromptTemplate>(
        &ns,
        "PromptTemplate",
        "support",
        template_spec("v1 {{ company }}"),
    )
    .await;
    wait_pt(&ns, "support", "version 1", |pt| {
        pt.status.as_ref().unwrap().version == Some(1)
    })
    .await;

    relay.stop();
    ns.api::<PromptTemplate>()
        .patch(
            "support",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": "v2 {{ company }}"}})),
        )
        .await
        .expect("changing the template");
    let pt = wait_pt(&ns, "support", "Synced=False DatabaseUnavailable", |pt| {
        pt_has(pt, "Synced", "False", "DatabaseUnavailable")
    })
    .await;
    assert_eq!(
        pt.status.as_ref().unwrap().version,
        Some(1),
        "version 1 is still what is served"
    );
    assert!(pt_has(&pt, "Valid", "True", ""));
    let failures_then = op
        .metric("faas_operator_reconcile_failures_total{controller=\"prompttemplate\",category=\"database\"}")
        .await
        .expect("metrics")
        .unwrap_or(0.0);
    // Backoff: a handful of retries in 10 seconds, not a hot loop.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let failures_now = op
        .metric("faas_operator_reconcile_failures_total{controller=\"prompttemplate\",category=\"database\"}")
        .await
        .expect("metrics")
        .unwrap_or(0.0);
    assert!(
        failures_now - failures_then <= 4.0,
        "{failures_then} → {failures_now} failures in 10 s"
    );

    relay.resume().await;
    wait_pt(
        &ns,
        "support",
        "version 2 once the database is back",
        |pt| pt_has(pt, "Synced", "True", "") && pt.status.as_ref().unwrap().version == Some(2),
    )
    .await;
    assert_eq!(template_versions(&db, &ns.name, "support").await, [1, 2]);
    drop(op);
}
