//! LLM operations: events from NATS and HTTP batches stored in Postgres, a
//! query API with filters and cursor pagination, metrics and cost analysis,
//! and the per-model pricing table.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::platform::auth::valid_tenant_id;
use crate::platform::error::{Problem, problem_responses};
use crate::platform::events::{Envelope, HandlerError};
use crate::platform::extract::{Json, Path, Query};
use crate::platform::{ApiError, ApiResult, AppState, Principal};
use crate::platform::{Built, ComponentSpec};
use crate::shared::pricing::Prices;
use faas_model::Component;

pub use faas_model::events::{
    LLM_OPERATION_KIND as EVENT_KIND, LLM_OPERATION_TYPE as EVENT_TYPE, LlmOpEvent, MAX_COST_USD,
    MAX_LATENCY_MS, MAX_TOKENS,
};
use faas_model::events::{optional, text, valid_time};
const MAX_BATCH: usize = 1000;
/// Price per million tokens.
const MAX_PRICE: f64 = 1_000_000.0;
/// Length of a model, provider, agent or user named in a query.
const MAX_FILTER: usize = 256;

/// Checks an event against the bounds of the API, naming the field.
pub fn validate_event(e: &LlmOpEvent) -> ApiResult<()> {
    e.check().map_err(ApiError::Validation)
}

fn time_param(name: &str, t: Option<DateTime<Utc>>) -> ApiResult<Option<DateTime<Utc>>> {
    match t {
        Some(t) if !valid_time(&t) => Err(ApiError::BadRequest(format!(
            "{name}: must be in the years 0 to 9999"
        ))),
        other => Ok(other),
    }
}

fn filter_param(name: &str, v: &Option<String>) -> ApiResult<()> {
    optional(name, v, MAX_FILTER, false).map_err(ApiError::BadRequest)
}

/// Stores events of one tenant; ids already stored are skipped.
pub async fn store(state: &AppState, tenant: &str, events: Vec<LlmOpEvent>) -> ApiResult<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let prices = state.shared::<Prices>();
    let mut rows = Vec::with_capacity(events.len());
    for e in events {
        let cost = match e.cost_usd {
            Some(c) => c,
            None => {
                let tokens = |t: i64| u64::try_from(t).unwrap_or(0);
                prices
                    .cost(
                        state.db()?,
                        tenant,
                        &e.model,
                        tokens(e.tokens_in),
                        tokens(e.tokens_out),
                    )
                    .await?
            }
        };
        rows.push((e, cost));
    }
    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "INSERT INTO llm_operations (id, tenant_id, occurred_at, user_id, agent_id, model, provider, operation, \
         tokens_in, tokens_out, latency_ms, cost_usd, status, error, cached, correlation_id, request_id) ",
    );
    let now = Utc::now();
    qb.push_values(rows, |mut b, (e, cost)| {
        b.push_bind(e.id.unwrap_or_else(Uuid::now_v7))
            .push_bind(tenant.to_string())
            .push_bind(e.occurred_at.unwrap_or(now))
            .push_bind(e.user_id)
            .push_bind(e.agent_id)
            .push_bind(e.model)
            .push_bind(e.provider)
            .push_bind(e.operation)
            .push_bind(e.tokens_in)
            .push_bind(e.tokens_out)
            .push_bind(e.latency_ms)
            .push_bind(cost)
            .push_bind(e.status)
            .push_bind(e.error)
            .push_bind(e.cached)
            .push_bind(e.correlation_id)
            .push_bind(e.request_id);
    });
    qb.push(" ON CONFLICT (tenant_id, id) DO NOTHING");
    let done = qb.build().execute(state.db()?).await?;
    Ok(done.rows_affected())
}

/// Starts the durable consumer of LLM-operation events.
pub async fn start_consumer(state: &AppState) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let bus = state.events().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    let st = state.clone();
    let handler: crate::platform::events::Handler = std::sync::Arc::new(move |env: Envelope| {
        let st = st.clone();
        Box::pin(async move {
            if !valid_tenant_id(&env.tenant_id) {
                return Err(HandlerError::Permanent(
                    "the envelope has no valid tenant id".into(),
                ));
            }
            let mut ev: LlmOpEvent = env.json()?;
            validate_event(&ev).map_err(|e| HandlerError::Permanent(e.to_string()))?;
            if ev.correlation_id.is_none() && !env.correlation_id.is_empty() {
                ev.correlation_id = Some(env.correlation_id.clone());
            }
            store(&st, &env.tenant_id, vec![ev])
                .await
                .map_err(|e| match e {
                    ApiError::Validation(m) => HandlerError::Permanent(m),
                    other => HandlerError::Retry(format!("{other:?}")),
                })?;
            Ok(())
        })
    });
    bus.consume(
        EVENT_KIND,
        "llmops",
        state.config.nats_max_deliver,
        handler,
        state.shutdown.clone(),
    )
    .await
}

/// llmops as the platform serves it: its routes and the consumer of LLM-operation events.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::Llmops,
    openapi,
    openai_routes: &[],
    build,
};

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let consumer = platform.clone();
    Ok(Built {
        router: router().with_state(platform.clone()),
        background: vec![Box::new(move || {
            Box::pin(async move { start_consumer(&consumer).await })
        })],
    })
}

fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/llmops/events", post(ingest).get(query_events))
        .route("/v1/llmops/metrics", get(metrics))
        .route("/v1/llmops/pricing", get(list_pricing))
        .route(
            "/v1/llmops/pricing/{model}",
            put(put_pricing).delete(delete_pricing),
        )
}

#[derive(OpenApi)]
#[openapi(
    paths(ingest, query_events, metrics, list_pricing, put_pricing, delete_pricing),
    components(schemas(LlmOpEvent, IngestBatch, IngestResult, EventPage, StoredEvent, MetricsReport, MetricsGroup,
                       Pricing, PricingInput, Problem)),
    tags((name = "llmops", description = "LLM-operation history, metrics and costs"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

problem_responses! {
    /// A value breaks a rule of this API; the detail names it and the limit.
    Invalid = 422;
    /// The caller lacks the role: a tenant admin for prices, the platform's
    /// operators for metrics across tenants.
    Forbidden = 403;
    /// The tenant has no own price for the model.
    NotFound = 404;
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBatch {
    /// 1 to 1000 events; the tenant is the caller's.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<LlmOpEvent>,
}

#[derive(Serialize, ToSchema)]
pub struct IngestResult {
    pub received: usize,
    /// New events stored (repeated ids are skipped).
    pub stored: u64,
}

#[utoipa::path(post, path = "/v1/llmops/events", tag = "llmops", request_body = IngestBatch,
    responses((status = 202, description = "Stored; repeated ids are skipped", body = IngestResult)))]
async fn ingest(
    State(state): State<AppState>,
    p: Principal,
    Json(batch): Json<IngestBatch>,
) -> ApiResult<(StatusCode, Json<IngestResult>)> {
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::Validation(format!(
            "events: send 1 to {MAX_BATCH} events"
        )));
    }
    for (i, e) in batch.events.iter().enumerate() {
        validate_event(e).map_err(|err| ApiError::Validation(format!("events[{i}].{err}")))?;
    }
    let received = batch.events.len();
    let stored = store(&state, &p.tenant_id, batch.events).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestResult { received, stored }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// RFC 3339, years 0 to 9999; default: 30 days before `to`.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, years 0 to 9999; default: now.
    pub to: Option<DateTime<Utc>>,
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub model: Option<String>,
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub provider: Option<String>,
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub agent_id: Option<String>,
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub user_id: Option<String>,
    #[param(pattern = r"^(ok|error)$")]
    pub status: Option<String>,
    /// 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    #[param(max_length = 256)]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub model: String,
    pub provider: String,
    pub operation: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub status: String,
    pub error: Option<String>,
    pub cached: bool,
    pub correlation_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}

fn encode_cursor(t: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{id}", t.to_rfc3339()))
}

fn decode_cursor(c: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    let bad = || ApiError::BadRequest("cursor: not a cursor from a previous page".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = s.split_once('|').ok_or_else(bad)?;
    let t = DateTime::parse_from_rfc3339(t)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    if !valid_time(&t) {
        return Err(bad());
    }
    Ok((t, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn range(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let from = time_param("from", from)?;
    let to = match time_param("to", to)? {
        Some(t) => t,
        None => Utc::now() + Duration::seconds(1),
    };
    let from = from.unwrap_or_else(|| {
        to.checked_sub_signed(Duration::days(30))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    });
    if from > to {
        return Err(ApiError::BadRequest("from: must not be after to".into()));
    }
    Ok((from, to))
}

/// A checked event query.
struct EventQuery {
    limit: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    cursor: Option<(DateTime<Utc>, Uuid)>,
}

impl EventFilter {
    fn check(&self) -> ApiResult<EventQuery> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::BadRequest(
                "limit: must be between 1 and 500".into(),
            ));
        }
        if let Some(s) = &self.status
            && !matches!(s.as_str(), "ok" | "error")
        {
            return Err(ApiError::BadRequest("status: must be ok or error".into()));
        }
        filter_param("model", &self.model)?;
        filter_param("provider", &self.provider)?;
        filter_param("agent_id", &self.agent_id)?;
        filter_param("user_id", &self.user_id)?;
        let (from, to) = range(self.from, self.to)?;
        let cursor = self.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(EventQuery {
            limit,
            from,
            to,
            cursor,
        })
    }
}

#[utoipa::path(get, path = "/v1/llmops/events", tag = "llmops", params(EventFilter),
    responses((status = 200, description = "The tenant's events, newest first", body = EventPage)))]
async fn query_events(
    State(state): State<AppState>,
    p: Principal,
    Query(f): Query<EventFilter>,
) -> ApiResult<Json<EventPage>> {
    let q = f.check()?;
    let mut items: Vec<StoredEvent> = sqlx::query_as(
        "SELECT id, occurred_at, user_id, agent_id, model, provider, operation, tokens_in, tokens_out, latency_ms, \
         cost_usd, status, error, cached, correlation_id FROM llm_operations \
         WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3 \
         AND ($4::text IS NULL OR model = $4) AND ($5::text IS NULL OR provider = $5) \
         AND ($6::text IS NULL OR agent_id = $6) AND ($7::text IS NULL OR user_id = $7) \
         AND ($8::text IS NULL OR status = $8) \
         AND ($9::timestamptz IS NULL OR (occurred_at, id) < ($9, $10)) \
         ORDER BY occurred_at DESC, id DESC LIMIT $11",
    )
    .bind(&p.tenant_id)
    .bind(q.from)
    .bind(q.to)
    .bind(&f.model)
    .bind(&f.provider)
    .bind(&f.agent_id)
    .bind(&f.user_id)
    .bind(&f.status)
    .bind(q.cursor.map(|c| c.0))
    .bind(q.cursor.map(|c| c.1))
    .bind(q.limit + 1)
    .fetch_all(state.db()?)
    .await?;
    let more = items.len() as i64 > q.limit;
    items.truncate(q.limit as usize);
    let next_cursor = if more {
        items.last().map(|e| encode_cursor(e.occurred_at, e.id))
    } else {
        None
    };
    Ok(Json(EventPage { items, next_cursor }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// RFC 3339, years 0 to 9999; default: 30 days before `to`.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, years 0 to 9999; default: now.
    pub to: Option<DateTime<Utc>>,
    /// model, provider, agent, user, day, none (default), or tenant (platform admins only, across tenants).
    #[param(pattern = r"^(model|provider|agent|user|day|tenant|none)$")]
    pub group_by: Option<String>,
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub model: Option<String>,
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub agent_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MetricsGroup {
    pub key: String,
    pub requests: i64,
    pub errors: i64,
    pub error_rate: f64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
}

#[derive(Serialize, ToSchema)]
pub struct MetricsReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: String,
    pub groups: Vec<MetricsGroup>,
    pub total_cost_usd: f64,
}

#[derive(sqlx::FromRow)]
struct MetricsRow {
    key: String,
    requests: i64,
    errors: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost_usd: f64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

impl From<MetricsRow> for MetricsGroup {
    fn from(r: MetricsRow) -> Self {
        MetricsGroup {
            error_rate: if r.requests > 0 {
                r.errors as f64 / r.requests as f64
            } else {
                0.0
            },
            key: r.key,
            requests: r.requests,
            errors: r.errors,
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            cost_usd: r.cost_usd,
            latency_p50_ms: r.p50.unwrap_or(0.0),
            latency_p95_ms: r.p95.unwrap_or(0.0),
            latency_p99_ms: r.p99.unwrap_or(0.0),
        }
    }
}

/// The SQL of a grouping; only these fixed expressions reach the SQL text.
fn group_key(group_by: &str) -> ApiResult<&'static str> {
    Ok(match group_by {
        "none" => "'all'",
        "model" => "model",
        "provider" => "provider",
        "agent" => "coalesce(agent_id, '')",
        "user" => "coalesce(user_id, '')",
        "day" => "to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        "tenant" => "tenant_id",
        other => {
            return Err(ApiError::BadRequest(format!(
                "group_by: {other:?} is not one of model, provider, agent, user, day, tenant, none"
            )));
        }
    })
}

/// Sums are taken as numeric and capped, so that no history, however
/// large its numbers, makes the report fail.
const METRICS_COLUMNS: &str = "count(*) AS requests, count(*) FILTER (WHERE status = 'error') AS errors, \
     LEAST(coalesce(sum(tokens_in), 0), 9223372036854775807)::bigint AS tokens_in, \
     LEAST(coalesce(sum(tokens_out), 0), 9223372036854775807)::bigint AS tokens_out, \
     LEAST(coalesce(sum(cost_usd::numeric), 0), 1e308)::float8 AS cost_usd, \
     percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50, \
     percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, \
     percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99";

#[utoipa::path(get, path = "/v1/llmops/metrics", tag = "llmops", params(MetricsQuery),
    responses((status = 200, description = "Metrics by group", body = MetricsReport), Forbidden))]
async fn metrics(
    State(state): State<AppState>,
    p: Principal,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<Json<MetricsReport>> {
    let group_by = q.group_by.unwrap_or_else(|| "none".into());
    let key_sql = group_key(&group_by)?;
    filter_param("model", &q.model)?;
    filter_param("agent_id", &q.agent_id)?;
    // Only the platform's operators see across tenants.
    let tenant_scope = if group_by == "tenant" {
        let role = state.config.platform_admin_role.clone();
        if !p.roles.iter().any(|r| r == &role) {
            return Err(ApiError::Forbidden(format!(
                "costs across tenants need the {role} role"
            )));
        }
        None
    } else {
        Some(p.tenant_id.as_str())
    };
    let (from, to) = range(q.from, q.to)?;
    let rows: Vec<MetricsRow> = sqlx::query_as(&format!(
        "SELECT {key_sql} AS key, {METRICS_COLUMNS} \
         FROM llm_operations WHERE ($1::text IS NULL OR tenant_id = $1) AND occurred_at >= $2 AND occurred_at < $3 \
         AND ($4::text IS NULL OR model = $4) AND ($5::text IS NULL OR agent_id = $5) \
         GROUP BY 1 ORDER BY 1"
    ))
    .bind(tenant_scope)
    .bind(from)
    .bind(to)
    .bind(&q.model)
    .bind(&q.agent_id)
    .fetch_all(state.db()?)
    .await?;
    let groups: Vec<MetricsGroup> = rows.into_iter().map(MetricsGroup::from).collect();
    let total_cost_usd = groups.iter().map(|g| g.cost_usd).sum::<f64>().min(f64::MAX);
    Ok(Json(MetricsReport {
        from,
        to,
        group_by,
        groups,
        total_cost_usd,
    }))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Pricing {
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
    /// `default` or `tenant` (the tenant's own override).
    pub source: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingInput {
    /// USD per million input tokens.
    #[schema(minimum = 0, maximum = 1000000)]
    pub input_per_million: f64,
    /// USD per million output tokens.
    #[schema(minimum = 0, maximum = 1000000)]
    pub output_per_million: f64,
}

#[utoipa::path(get, path = "/v1/llmops/pricing", tag = "llmops",
    responses((status = 200, description = "The prices that apply to the tenant", body = Vec<Pricing>)))]
async fn list_pricing(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<Pricing>>> {
    let rows: Vec<Pricing> = sqlx::query_as(
        "SELECT DISTINCT ON (model) model, input_per_million, output_per_million, \
         CASE WHEN tenant_id = '' THEN 'default' ELSE 'tenant' END AS source FROM model_pricing \
         WHERE tenant_id IN ($1, '') ORDER BY model, tenant_id DESC",
    )
    .bind(&p.tenant_id)
    .fetch_all(state.db()?)
    .await?;
    Ok(Json(rows))
}

#[utoipa::path(put, path = "/v1/llmops/pricing/{model}", tag = "llmops", params(("model" = String, Path, description = "The model's name", min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")), request_body = PricingInput,
    responses((status = 200, description = "The tenant's own price", body = Pricing), Forbidden))]
async fn put_pricing(
    State(state): State<AppState>,
    p: Principal,
    Path(model): Path<String>,
    Json(input): Json<PricingInput>,
) -> ApiResult<Json<Pricing>> {
    p.require_admin()?;
    text("model", &model, 1, 200, false).map_err(ApiError::Validation)?;
    for (name, v) in [
        ("input_per_million", input.input_per_million),
        ("output_per_million", input.output_per_million),
    ] {
        if !(0.0..=MAX_PRICE).contains(&v) {
            return Err(ApiError::Validation(format!(
                "{name}: must be a number between 0 and {MAX_PRICE}"
            )));
        }
    }
    sqlx::query(
        "INSERT INTO model_pricing (tenant_id, model, input_per_million, output_per_million, updated_by) \
         VALUES ($1,$2,$3,$4,$5) ON CONFLICT (tenant_id, model) DO UPDATE SET input_per_million=$3, \
         output_per_million=$4, updated_by=$5, updated_at=now()",
    )
    .bind(&p.tenant_id)
    .bind(&model)
    .bind(input.input_per_million)
    .bind(input.output_per_million)
    .bind(&p.user_id)
    .execute(state.db()?)
    .await?;
    state.shared::<Prices>().forget(&p.tenant_id, &model);
    Ok(Json(Pricing {
        model,
        input_per_million: input.input_per_million,
        output_per_million: input.output_per_million,
        source: "tenant".into(),
    }))
}

#[utoipa::path(delete, path = "/v1/llmops/pricing/{model}", tag = "llmops", params(("model" = String, Path, description = "The model's name", min_length = 1, max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    responses((status = 204, description = "The default price applies again"), Invalid, Forbidden, NotFound))]
async fn delete_pricing(
    State(state): State<AppState>,
    p: Principal,
    Path(model): Path<String>,
) -> ApiResult<StatusCode> {
    p.require_admin()?;
    text("model", &model, 1, 200, false).map_err(ApiError::Validation)?;
    let done = sqlx::query("DELETE FROM model_pricing WHERE tenant_id = $1 AND model = $2")
        .bind(&p.tenant_id)
        .bind(&model)
        .execute(state.db()?)
        .await?;
    state.shared::<Prices>().forget(&p.tenant_id, &model);
    if done.rows_affected() == 0 {
        return Err(ApiError::NotFound(
            "this tenant has no own price for the model".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let t = Utc::now();
        let id = Uuid::now_v7();
        let (t2, id2) = decode_cursor(&encode_cursor(t, id)).unwrap();
        assert_eq!((t2, id2), (t, id));
        assert!(decode_cursor("not-a-cursor").is_err());
    }
}
