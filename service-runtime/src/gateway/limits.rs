//! Per-tenant limits (requests and tokens per minute) and budgets (spend per
//! day or month), counted in Redis so every replica sees the same numbers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use chrono::{Datelike, Timelike, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{Object, opt_integer};
use crate::platform::auth::valid_tenant_id;
use crate::platform::extract::{Json, Path};
use crate::platform::{ApiError, ApiResult, AppState, Principal};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    #[default]
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    fn from_db(s: &str) -> Self {
        if s == "day" {
            BudgetPeriod::Day
        } else {
            BudgetPeriod::Month
        }
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
/// database round trip.
#[derive(Default)]
pub struct LimitCache(Mutex<HashMap<String, (Instant, Limits)>>);

const CACHE_FOR: Duration = Duration::from_secs(5);

impl LimitCache {
    pub async fn get(&self, state: &AppState, tenant: &str) -> ApiResult<Limits> {
        if let Some((at, l)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(tenant)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(l.clone());
        }
        let l = load(state, tenant).await?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_string(), (Instant::now(), l.clone()));
        Ok(l)
    }

    pub fn forget(&self, tenant: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(tenant);
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

fn period_key(state: &AppState, tenant: &str, period: BudgetPeriod) -> String {
    let now = Utc::now();
    let id = if period == BudgetPeriod::Day {
        format!("{:04}{:02}{:02}", now.year(), now.month(), now.day())
    } else {
        format!("{:04}{:02}", now.year(), now.month())
    };
    state.redis_key(&["gw", "spend", tenant, &id])
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

/// Counts the request and refuses it when a limit or the budget is used up.
pub async fn admit(state: &AppState, cache: &LimitCache, tenant: &str) -> ApiResult<()> {
    let limits = cache.get(state, tenant).await?;
    let mut conn = state.redis()?;
    if let Some(budget) = limits.budget_usd {
        let spent: Option<i64> = conn
            .get(period_key(state, tenant, limits.budget_period))
            .await?;
        if spent.unwrap_or(0) as f64 / 1e6 >= budget {
            return Err(ApiError::TooManyRequests {
                detail: format!(
                    "the budget of {budget} USD per {} is used up",
                    limits.budget_period.as_str()
                ),
                retry_after_secs: Some(seconds_to_period_end(limits.budget_period)),
            });
        }
    }
    if let Some(tpm) = limits.tokens_per_minute {
        let (key, left) = minute_key(state, tenant, "tok");
        let used: Option<i64> = conn.get(&key).await?;
        if used.unwrap_or(0) >= tpm as i64 {
            return Err(ApiError::TooManyRequests {
                detail: format!("the limit of {tpm} tokens per minute is reached"),
                retry_after_secs: Some(left),
            });
        }
    }
    if let Some(rpm) = limits.requests_per_minute {
        let (key, left) = minute_key(state, tenant, "req");
        let (count,): (i64,) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, 120)
            .ignore()
            .query_async(&mut conn)
            .await?;
        if count > rpm as i64 {
            return Err(ApiError::TooManyRequests {
                detail: format!("the limit of {rpm} requests per minute is reached"),
                retry_after_secs: Some(left),
            });
        }
    }
    Ok(())
}

/// The largest amount one call adds to a counter, far below where Redis overflows.
const MAX_INCREMENT: i64 = 1 << 50;

/// Adds what a finished call used.
pub async fn record_usage(
    state: &AppState,
    cache: &LimitCache,
    tenant: &str,
    tokens: u64,
    cost_usd: f64,
) {
    let result: ApiResult<()> = async {
        let limits = cache.get(state, tenant).await?;
        // Counters are kept only while a limit needs them.
        if limits.tokens_per_minute.is_none() && limits.budget_usd.is_none() {
            return Ok(());
        }
        let mut conn = state.redis()?;
        let (tok_key, _) = minute_key(state, tenant, "tok");
        let spend_key = period_key(state, tenant, limits.budget_period);
        // Figures a provider reports are not trusted to fit: a huge count must not wrap
        // to a negative increment that lowers the tenant's usage.
        let micro = (cost_usd * 1e6).round().clamp(0.0, MAX_INCREMENT as f64) as i64;
        let tokens = i64::try_from(tokens)
            .unwrap_or(MAX_INCREMENT)
            .min(MAX_INCREMENT);
        redis::pipe()
            .incr(&tok_key, tokens)
            .ignore()
            .expire(&tok_key, 120)
            .ignore()
            .incr(&spend_key, micro)
            .ignore()
            .expire(&spend_key, 32 * 86_400)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "recording usage");
    }
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
    State(state): State<AppState>,
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
    super::limit_cache().forget(&tenant);
    Ok(Json(view(&state, &tenant).await?))
}
