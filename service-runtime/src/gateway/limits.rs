//! Per-tenant limits (requests and tokens per minute) and budgets (spend per
//! day or month), counted in Redis so every replica sees the same numbers, and
//! decided in-process from counters synced with Redis in the background.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use chrono::{Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{Object, opt_integer};
use crate::platform::auth::valid_tenant_id;
use crate::platform::extract::{Json, Path};
use crate::platform::{ApiError, ApiResult, AppState, Principal};

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    #[default]
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The period a stored row names; the default for anything else.
    fn from_db(s: &str) -> Self {
        s.parse().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute; absent means unlimited.
    #[serde(default, deserialize_with = "opt_integer")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub requests_per_minute: Option<i32>,
    /// Prompt plus completion tokens per minute; absent means unlimited.
    #[serde(default, deserialize_with = "opt_integer")]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub tokens_per_minute: Option<i32>,
    /// Spend per period in USD; absent means unlimited.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub budget_usd: Option<f64>,
    /// The period of the budget (UTC).
    #[serde(default)]
    pub budget_period: BudgetPeriod,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LimitsView {
    pub requests_per_minute: Option<i32>,
    pub tokens_per_minute: Option<i32>,
    pub budget_usd: Option<f64>,
    pub budget_period: BudgetPeriod,
    pub requests_this_minute: i64,
    pub tokens_this_minute: i64,
    pub spent_usd_this_period: f64,
}

/// A short in-process cache of the limits, so most requests cost no
/// database round trip, and this replica's view of each limited tenant's counters.
///
/// Counting happens here, on the request path, without a Redis round trip: a call is
/// admitted against the totals Redis held at the last sync plus what this replica
/// counted since, and the counts are added to Redis in one pipeline per tenant at most
/// every [`SYNC_EVERY`] while the tenant is active. A replica therefore sees the other
/// replicas' calls and spend at most [`SYNC_EVERY`] (plus one round trip) late, and its
/// own at once; a tenant idle for longer than [`FRESH_FOR`] is synced before its next
/// call is decided.
pub struct LimitCache(moka::sync::Cache<String, Arc<Tenant>>);

impl Default for LimitCache {
    fn default() -> Self {
        // A tenant idle this long has long been synced; it is loaded again when it returns.
        Self(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        )
    }
}

const CACHE_FOR: Duration = Duration::from_secs(5);
/// How often an active tenant's counters are exchanged with Redis.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);
/// Counters older than this are refreshed before a call is decided.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Tenant(Mutex<Counters>);

/// One counter: what Redis held at the last sync, what is being added now, what is
/// counted and not yet sent.
#[derive(Default, Clone, Copy)]
struct Count {
    seen: i64,
    sending: i64,
    pending: i64,
}

impl Count {
    fn total(&self) -> i64 {
        self.seen
            .saturating_add(self.sending)
            .saturating_add(self.pending)
    }

    fn add(&mut self, n: i64) {
        self.pending = self.pending.saturating_add(n).min(MAX_INCREMENT);
    }
}

#[derive(Default)]
struct Counters {
    limits: Limits,
    loaded_at: Option<Instant>,
    /// The minute (since the epoch) `requests` and `tokens` count.
    minute: i64,
    requests: Count,
    tokens: Count,
    /// The budget period `spend` counts (`YYYYMMDD` or `YYYYMM`).
    period: u32,
    spend: Count,
    /// Counts of a window that ended before they were sent: (key, amount, ttl).
    backlog: Vec<(String, i64, i64)>,
    synced_at: Option<Instant>,
    sync_running: bool,
    sync_scheduled: bool,
}

impl Counters {
    fn counts_tokens(&self) -> bool {
        self.limits.tokens_per_minute.is_some() || self.limits.budget_usd.is_some()
    }

    /// Moves to the current minute and period; counts of the ones that ended go to the backlog.
    fn roll(&mut self, state: &AppState, tenant: &str) {
        let now = Utc::now();
        let minute = now.timestamp() / 60;
        if minute != self.minute {
            for (what, c) in [("req", &mut self.requests), ("tok", &mut self.tokens)] {
                // What is being sent is the sync's to settle; it knows the window.
                if c.pending > 0 && self.minute != 0 {
                    let key =
                        state.redis_key(&["gw", "rl", tenant, what, &self.minute.to_string()]);
                    self.backlog.push((key, c.pending, MINUTE_TTL));
                }
                *c = Count::default();
            }
            self.minute = minute;
            self.synced_at = None;
        }
        let period = period_id(self.limits.budget_period);
        if period != self.period {
            if self.spend.pending > 0 && self.period != 0 {
                let key = state.redis_key(&["gw", "spend", tenant, &self.period.to_string()]);
                self.backlog.push((key, self.spend.pending, PERIOD_TTL));
            }
            self.spend = Count::default();
            self.period = period;
            self.synced_at = None;
        }
    }

    fn fresh(&self) -> bool {
        self.synced_at.is_some_and(|at| at.elapsed() < FRESH_FOR)
    }
}

impl LimitCache {
    fn tenant(&self, tenant: &str) -> Arc<Tenant> {
        match self.0.get(tenant) {
            Some(t) => t,
            None => self.0.get_with(tenant.to_string(), Default::default),
        }
    }

    pub async fn get(&self, state: &AppState, tenant: &str) -> ApiResult<Limits> {
        let t = self.tenant(tenant);
        {
            let c = t.lock();
            if c.loaded_at.is_some_and(|at| at.elapsed() < CACHE_FOR) {
                return Ok(c.limits.clone());
            }
        }
        let l = load(state, tenant).await?;
        let mut c = t.lock();
        c.limits = l.clone();
        c.loaded_at = Some(Instant::now());
        Ok(l)
    }

    pub fn forget(&self, tenant: &str) {
        if let Some(t) = self.0.get(tenant) {
            t.lock().loaded_at = None;
        }
    }
}

impl Tenant {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type LimitsRow = (Option<i32>, Option<i32>, Option<f64>, String);

async fn load(state: &AppState, tenant: &str) -> ApiResult<Limits> {
    let row: Option<LimitsRow> = sqlx::query_as(
        "SELECT requests_per_minute, tokens_per_minute, budget_usd, budget_period FROM gateway_limits WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(state.db()?)
    .await?;
    Ok(row
        .map(|(r, t, b, p)| Limits {
            requests_per_minute: r,
            tokens_per_minute: t,
            budget_usd: b,
            budget_period: BudgetPeriod::from_db(&p),
        })
        .unwrap_or_default())
}

fn minute_key(state: &AppState, tenant: &str, what: &str) -> (String, u64) {
    let now = Utc::now();
    let minute = now.timestamp() / 60;
    let left = 60 - now.second() as u64;
    (
        state.redis_key(&["gw", "rl", tenant, what, &minute.to_string()]),
        left,
    )
}

/// The budget period now: `YYYYMMDD` or `YYYYMM` as a number.
fn period_id(period: BudgetPeriod) -> u32 {
    let now = Utc::now();
    let month = now.year().clamp(0, 9999) as u32 * 100 + now.month();
    if period == BudgetPeriod::Day {
        month * 100 + now.day()
    } else {
        month
    }
}

fn period_key(state: &AppState, tenant: &str, period: BudgetPeriod) -> String {
    state.redis_key(&["gw", "spend", tenant, &period_id(period).to_string()])
}

fn seconds_to_period_end(period: BudgetPeriod) -> u64 {
    let now = Utc::now();
    let secs_today = now.num_seconds_from_midnight() as u64;
    let day_left = 86_400 - secs_today;
    if period == BudgetPeriod::Day {
        return day_left;
    }
    let days_in_month = match now.month() {
        2 if chrono::NaiveDate::from_ymd_opt(now.year(), 2, 29).is_some() => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day_left + (days_in_month - now.day()) as u64 * 86_400
}

fn has_limits(l: &Limits) -> bool {
    l.requests_per_minute.is_some() || l.tokens_per_minute.is_some() || l.budget_usd.is_some()
}

/// Counts the request and refuses it when a limit or the budget is used up.
pub async fn admit(state: &AppState, cache: &LimitCache, tenant: &str) -> ApiResult<()> {
    let limits = cache.get(state, tenant).await?;
    if !has_limits(&limits) {
        return Ok(());
    }
    let t = cache.tenant(tenant);
    let stale = {
        let mut c = t.lock();
        c.roll(state, tenant);
        !c.fresh()
    };
    if stale {
        sync(state, tenant, &t).await?;
    }
    let decided = {
        let mut c = t.lock();
        c.roll(state, tenant);
        decide(&mut c)
    };
    schedule(state, tenant, &t);
    decided
}

/// The decision on one request, from the counters as this replica knows them.
fn decide(c: &mut Counters) -> ApiResult<()> {
    let l = &c.limits;
    if let Some(budget) = l.budget_usd
        && c.spend.total() as f64 / 1e6 >= budget
    {
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "the budget of {budget} USD per {} is used up",
                l.budget_period.as_str()
            ),
            retry_after_secs: Some(seconds_to_period_end(l.budget_period)),
        });
    }
    let left = || 60 - Utc::now().second() as u64;
    if let Some(tpm) = l.tokens_per_minute
        && c.tokens.total() >= tpm as i64
    {
        return Err(ApiError::TooManyRequests {
            detail: format!("the limit of {tpm} tokens per minute is reached"),
            retry_after_secs: Some(left()),
        });
    }
    if let Some(rpm) = l.requests_per_minute {
        // A refused request counts too, as it did reach the gateway.
        c.requests.add(1);
        if c.requests.total() > rpm as i64 {
            return Err(ApiError::TooManyRequests {
                detail: format!("the limit of {rpm} requests per minute is reached"),
                retry_after_secs: Some(left()),
            });
        }
    }
    Ok(())
}

/// What one sync sends, so its answer can be applied to the window it was for.
struct Plan {
    minute: i64,
    period: u32,
    requests: Option<(String, i64)>,
    tokens: Option<(String, i64)>,
    spend: Option<(String, i64)>,
    backlog: Vec<(String, i64, i64)>,
}

/// Adds this replica's unsent counts to Redis and reads the totals back, in one round trip.
async fn sync(state: &AppState, tenant: &str, t: &Tenant) -> ApiResult<()> {
    let Some(plan) = Plan::take(state, tenant, &mut t.lock()) else {
        return Ok(());
    };
    let pipe = plan.pipeline();
    let result: ApiResult<Vec<i64>> = async {
        let mut conn = state.redis()?;
        Ok(pipe.query_async(&mut conn).await?)
    }
    .await;
    let mut guard = t.lock();
    let c = &mut *guard;
    c.sync_running = false;
    // Try again after a pause rather than on every request, also after a failure.
    c.synced_at = Some(Instant::now());
    match result {
        Ok(totals) => {
            plan.settle(c, totals);
            Ok(())
        }
        Err(e) => {
            plan.restore(c);
            Err(e)
        }
    }
}

/// TTL of the per-minute counters and of the budget period's.
const MINUTE_TTL: i64 = 120;
const PERIOD_TTL: i64 = 32 * 86_400;

impl Plan {
    /// Moves the pending counts to `sending` and returns what to send; `None` when a sync
    /// is already running.
    fn take(state: &AppState, tenant: &str, c: &mut Counters) -> Option<Plan> {
        if c.sync_running {
            return None;
        }
        c.roll(state, tenant);
        c.sync_running = true;
        let minute = c.minute.to_string();
        let take = |count: &mut Count, key: String| {
            count.sending = count.pending;
            count.pending = 0;
            (key, count.sending)
        };
        let requests = c.limits.requests_per_minute.is_some().then(|| {
            let key = state.redis_key(&["gw", "rl", tenant, "req", &minute]);
            take(&mut c.requests, key)
        });
        let counts_tokens = c.counts_tokens();
        let tokens = counts_tokens.then(|| {
            let key = state.redis_key(&["gw", "rl", tenant, "tok", &minute]);
            take(&mut c.tokens, key)
        });
        let period = c.period;
        let spend = counts_tokens.then(|| {
            let key = state.redis_key(&["gw", "spend", tenant, &period.to_string()]);
            take(&mut c.spend, key)
        });
        Some(Plan {
            minute: c.minute,
            period,
            requests,
            tokens,
            spend,
            backlog: std::mem::take(&mut c.backlog),
        })
    }

    /// One pipeline: each counter incremented (its total answered), the backlog added.
    fn pipeline(&self) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (counter, ttl) in [
            (&self.requests, MINUTE_TTL),
            (&self.tokens, MINUTE_TTL),
            (&self.spend, PERIOD_TTL),
        ] {
            if let Some((key, n)) = counter {
                pipe.incr(key, *n).expire(key, ttl).ignore();
            }
        }
        for (key, n, ttl) in &self.backlog {
            pipe.incr(key, *n).ignore().expire(key, *ttl).ignore();
        }
        pipe
    }

    /// The totals Redis answered become what is seen, for windows still current.
    fn settle(&self, c: &mut Counters, totals: Vec<i64>) {
        let mut totals = totals.into_iter();
        let same_minute = c.minute == self.minute;
        let same_period = c.period == self.period;
        for (sent, count, current) in [
            (&self.requests, &mut c.requests, same_minute),
            (&self.tokens, &mut c.tokens, same_minute),
            (&self.spend, &mut c.spend, same_period),
        ] {
            if sent.is_none() {
                continue;
            }
            let total = totals.next().unwrap_or(0);
            if current {
                count.seen = total;
                count.sending = 0;
            }
        }
    }

    /// Nothing is lost when a sync fails: what was sent is counted again next time, in its
    /// own window (through the backlog when the window has ended).
    fn restore(self, c: &mut Counters) {
        let same_minute = c.minute == self.minute;
        let same_period = c.period == self.period;
        let mut backlog = self.backlog;
        for (sent, count, current, ttl) in [
            (self.requests, &mut c.requests, same_minute, MINUTE_TTL),
            (self.tokens, &mut c.tokens, same_minute, MINUTE_TTL),
            (self.spend, &mut c.spend, same_period, PERIOD_TTL),
        ] {
            let Some((key, n)) = sent else { continue };
            if current {
                count.pending = count.pending.saturating_add(count.sending);
                count.sending = 0;
            } else if n > 0 {
                backlog.push((key, n, ttl));
            }
        }
        c.backlog.extend(backlog);
    }
}

/// Syncs the tenant's counters soon, unless a sync is already due.
fn schedule(state: &AppState, tenant: &str, t: &Arc<Tenant>) {
    let wait = {
        let mut c = t.lock();
        let recent = c.synced_at.is_some_and(|at| at.elapsed() < SYNC_EVERY);
        let unsent = c.requests.pending > 0
            || c.tokens.pending > 0
            || c.spend.pending > 0
            || !c.backlog.is_empty();
        if c.sync_scheduled || (recent && !unsent) {
            return;
        }
        c.sync_scheduled = true;
        c.synced_at
            .map_or(Duration::ZERO, |at| SYNC_EVERY.saturating_sub(at.elapsed()))
    };
    let (state, tenant, t) = (state.clone(), tenant.to_string(), t.clone());
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        t.lock().sync_scheduled = false;
        if let Err(e) = sync(&state, &tenant, &t).await {
            tracing::warn!(error = %e, "syncing usage counters");
        }
        let unsent = {
            let c = t.lock();
            c.requests.pending > 0
                || c.tokens.pending > 0
                || c.spend.pending > 0
                || !c.backlog.is_empty()
        };
        if unsent {
            schedule(&state, &tenant, &t);
        }
    });
}

/// The largest amount one call adds to a counter, far below where Redis overflows.
const MAX_INCREMENT: i64 = 1 << 50;

/// Adds what a finished call used; it reaches Redis with the tenant's next sync.
pub async fn record_usage(
    state: &AppState,
    cache: &LimitCache,
    tenant: &str,
    tokens: u64,
    cost_usd: f64,
) {
    let limits = match cache.get(state, tenant).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "recording usage");
            return;
        }
    };
    // Counters are kept only while a limit needs them.
    if limits.tokens_per_minute.is_none() && limits.budget_usd.is_none() {
        return;
    }
    // Figures a provider reports are not trusted to fit: a huge count must not wrap
    // to a negative increment that lowers the tenant's usage.
    let micro = (cost_usd * 1e6).round().clamp(0.0, MAX_INCREMENT as f64) as i64;
    let tokens = i64::try_from(tokens)
        .unwrap_or(MAX_INCREMENT)
        .min(MAX_INCREMENT);
    let t = cache.tenant(tenant);
    {
        let mut c = t.lock();
        c.roll(state, tenant);
        c.tokens.add(tokens);
        c.spend.add(micro);
    }
    schedule(state, tenant, &t);
}

async fn view(state: &AppState, tenant: &str) -> ApiResult<LimitsView> {
    let limits = load(state, tenant).await?;
    let mut conn = state.redis()?;
    let (req_key, _) = minute_key(state, tenant, "req");
    let (tok_key, _) = minute_key(state, tenant, "tok");
    let (r, t, s): (Option<i64>, Option<i64>, Option<i64>) = redis::pipe()
        .get(req_key)
        .get(tok_key)
        .get(period_key(state, tenant, limits.budget_period))
        .query_async(&mut conn)
        .await?;
    Ok(LimitsView {
        requests_per_minute: limits.requests_per_minute,
        tokens_per_minute: limits.tokens_per_minute,
        budget_usd: limits.budget_usd,
        budget_period: limits.budget_period,
        requests_this_minute: r.unwrap_or(0),
        tokens_this_minute: t.unwrap_or(0),
        spent_usd_this_period: s.unwrap_or(0) as f64 / 1e6,
    })
}

#[utoipa::path(get, path = "/v1/gateway/limits", tag = "gateway",
    responses((status = 200, description = "The caller's tenant's limits and what is used of them", body = LimitsView)))]
pub async fn get_own(State(state): State<AppState>, p: Principal) -> ApiResult<Json<LimitsView>> {
    Ok(Json(view(&state, &p.tenant_id).await?))
}

fn validate(l: &Limits) -> ApiResult<()> {
    if l.requests_per_minute.is_some_and(|v| v < 0) || l.tokens_per_minute.is_some_and(|v| v < 0) {
        return Err(ApiError::Validation("limits must not be negative".into()));
    }
    if l.budget_usd.is_some_and(|b| !b.is_finite() || b < 0.0) {
        return Err(ApiError::Validation(
            "budget_usd: must be a non-negative number".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(put, path = "/v1/gateway/limits/{tenant_id}", tag = "gateway", request_body = Limits,
    params(("tenant_id" = String, Path, description = "The tenant whose limits are set",
            pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")),
    responses((status = 200, description = "The tenant's limits, as set", body = LimitsView),
              (status = 403, description = "The caller lacks the platform admin role"),
              (status = 422, description = "A limit is invalid, or the tenant id is not one")))]
pub async fn put(
    State(state): State<super::GatewayState>,
    p: Principal,
    Path(tenant): Path<String>,
    Object(l): Object<Limits>,
) -> ApiResult<Json<LimitsView>> {
    let role = state.config.platform_admin_role.clone();
    if !p.roles.iter().any(|r| r == &role) && !state.auth.is_disabled() {
        return Err(ApiError::Forbidden(format!(
            "changing limits needs the {role} role"
        )));
    }
    if !valid_tenant_id(&tenant) {
        return Err(ApiError::Validation(
            "tenant_id: not a valid tenant id".into(),
        ));
    }
    validate(&l)?;
    sqlx::query(
        "INSERT INTO gateway_limits (tenant_id, requests_per_minute, tokens_per_minute, budget_usd, budget_period) \
         VALUES ($1,$2,$3,$4,$5) ON CONFLICT (tenant_id) DO UPDATE SET requests_per_minute=$2, tokens_per_minute=$3, \
         budget_usd=$4, budget_period=$5, updated_at=now()",
    )
    .bind(&tenant)
    .bind(l.requests_per_minute)
    .bind(l.tokens_per_minute)
    .bind(l.budget_usd)
    .bind(l.budget_period.as_str())
    .execute(state.db()?)
    .await?;
    state.component().limits.forget(&tenant);
    Ok(Json(view(&state, &tenant).await?))
}
