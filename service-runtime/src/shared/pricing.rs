//! Model prices and the cost of a call: read by the gateway (to meter and budget calls) and
//! by llmops (to cost events that arrive without one). The `model_pricing` table belongs to
//! llmops, which writes it; this reads it.

use std::time::Duration;

use crate::platform::ApiResult;

pub use faas_model::events::MAX_COST_USD;

/// Prices change rarely; a few seconds of staleness saves a query per call.
const PRICE_TTL: Duration = Duration::from_secs(5);
const MAX_ENTRIES: u64 = 10_000;

/// Price per million tokens (input, output), by tenant and model, for a few seconds. One per
/// process (`AppState::shared`), so the component that changes a price and the one that
/// reads it agree at once when they run together.
pub struct Prices {
    cache: moka::sync::Cache<(String, String), Option<(f64, f64)>>,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(PRICE_TTL)
                .build(),
        }
    }
}

impl Prices {
    /// Price per million tokens for a model: the tenant's own row, else the default row.
    pub async fn price(
        &self,
        db: &sqlx::PgPool,
        tenant: &str,
        model: &str,
    ) -> ApiResult<Option<(f64, f64)>> {
        let key = (tenant.to_string(), model.to_string());
        if let Some(p) = self.cache.get(&key) {
            return Ok(p);
        }
        let row: Option<(f64, f64)> = sqlx::query_as(
            "SELECT input_per_million, output_per_million FROM model_pricing \
             WHERE model = $1 AND tenant_id IN ($2, '') ORDER BY tenant_id DESC LIMIT 1",
        )
        .bind(model)
        .bind(tenant)
        .fetch_optional(db)
        .await?;
        self.cache.insert(key, row);
        Ok(row)
    }

    /// Drops what is known of a tenant's price for a model (after it changed).
    pub fn forget(&self, tenant: &str, model: &str) {
        self.cache
            .invalidate(&(tenant.to_string(), model.to_string()));
    }

    /// The cost of a call in USD, zero for a model without a price; never above
    /// [`MAX_COST_USD`].
    pub async fn cost(
        &self,
        db: &sqlx::PgPool,
        tenant: &str,
        model: &str,
        tokens_in: u64,
        tokens_out: u64,
    ) -> ApiResult<f64> {
        let cost = self
            .price(db, tenant, model)
            .await?
            .map(|(i, o)| (tokens_in as f64 * i + tokens_out as f64 * o) / 1e6)
            .unwrap_or(0.0);
        // Prices stored before their bound could make this infinite.
        Ok(if cost.is_finite() {
            cost.min(MAX_COST_USD)
        } else {
            MAX_COST_USD
        })
    }
}
