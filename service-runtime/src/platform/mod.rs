//! The platform layer every component stands on.

pub mod auth;
pub mod body;
pub mod config;
pub mod context;
pub mod egress;
pub mod error;
pub mod events;
pub mod extract;
pub mod http_client;
pub mod integer;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod telemetry;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

pub use auth::Principal;
pub use context::RequestContext;
pub use error::{ApiError, ApiResult};

use crate::Component;
use config::Config;
use events::EventBus;
use http_client::{Breakers, HttpClient};
use metrics::Metrics;

static BODY_LIMIT: AtomicUsize = AtomicUsize::new(2 * 1024 * 1024);

/// The request body limit in force (for error messages).
pub fn body_limit() -> usize {
    BODY_LIMIT.load(Ordering::Relaxed)
}

/// Shared state of the process, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub components: Vec<Component>,
    pub auth: auth::Authenticator,
    pub db: Option<sqlx::PgPool>,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub events: Option<EventBus>,
    pub http: HttpClient,
    pub metrics: Arc<Metrics>,
    /// Per-tenant request rate limit; `None` when FAAS_TENANT_RATE_LIMIT is 0.
    pub tenant_limiter: Option<Arc<ratelimit::TenantLimiter>>,
    /// Routes whose errors take the OpenAI error shape instead of problem+json.
    pub openai_routes: std::collections::HashSet<&'static str>,
    pub shutdown: CancellationToken,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// What each component needs from outside.
pub struct Needs {
    pub db: bool,
    pub redis: bool,
    pub nats: bool,
}

pub fn needs(components: &[Component]) -> Needs {
    Needs {
        db: components.iter().any(|c| {
            matches!(
                c,
                Component::Gateway | Component::Prompt | Component::Llmops
            )
        }),
        redis: components
            .iter()
            .any(|c| matches!(c, Component::Gateway | Component::Cache)),
        nats: components
            .iter()
            .any(|c| matches!(c, Component::Gateway | Component::Llmops)),
    }
}

pub async fn connect_db(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let url = config.require_database_url()?;
    let opts: sqlx::postgres::PgConnectOptions = url
        .parse()
        .map_err(|e| anyhow::anyhow!("setting DATABASE_URL is not a valid Postgres URL: {e}"))?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.db_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to DATABASE_URL: {e}"))
}

/// The embedded, numbered migrations of every component.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn migrate(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("running migrations: {e}"))
}

pub async fn connect_redis(config: &Config) -> anyhow::Result<redis::aio::ConnectionManager> {
    let url = config.require_redis_url()?;
    let client = redis::Client::open(url)
        .map_err(|e| anyhow::anyhow!("setting REDIS_URL is not a valid Redis URL: {e}"))?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(std::time::Duration::from_secs(5))
        .set_response_timeout(std::time::Duration::from_secs(5))
        .set_number_of_retries(3);
    redis::aio::ConnectionManager::new_with_config(client, cfg)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to REDIS_URL: {e}"))
}

/// Everything a state is built from; the connections may be supplied (tests)
/// or opened from the configuration.
pub struct StateParts {
    pub config: Config,
    pub components: Vec<Component>,
    pub db: Option<sqlx::PgPool>,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub events: Option<EventBus>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(parts: StateParts) -> anyhow::Result<Self> {
        let StateParts {
            config,
            components,
            db,
            redis,
            events,
            metrics,
        } = parts;
        let need = needs(&components);
        if need.db && db.is_none() {
            config.require_database_url()?;
            anyhow::bail!("a database pool is required by the selected components");
        }
        if need.redis && redis.is_none() {
            config.require_redis_url()?;
            anyhow::bail!("a Redis connection is required by the selected components");
        }
        if need.nats && events.is_none() {
            config.require_nats_url()?;
            anyhow::bail!("a NATS connection is required by the selected components");
        }
        BODY_LIMIT.store(config.max_body_bytes, Ordering::Relaxed);
        let auth = auth::Authenticator::new(&config.auth, &config.admin_role)?;
        let breakers = Arc::new(Breakers::new(
            config.breaker_failures,
            config.breaker_cooldown,
        ));
        let http = HttpClient::new(config.upstream_timeout, breakers, metrics.clone())?;
        let tenant_limiter = config.tenant_rate_limit.map(|rate| {
            Arc::new(ratelimit::TenantLimiter::new(
                rate,
                config.tenant_rate_burst,
            ))
        });
        Ok(Self(Arc::new(Inner {
            openai_routes: components
                .iter()
                .flat_map(|c| c.openai_routes().iter().copied())
                .collect(),
            config,
            components,
            auth,
            db,
            redis,
            events,
            http,
            metrics,
            tenant_limiter,
            shutdown: CancellationToken::new(),
        })))
    }

    /// Opens the connections the selected components need.
    pub async fn connect(config: Config, components: Vec<Component>) -> anyhow::Result<Self> {
        let need = needs(&components);
        let metrics = Arc::new(Metrics::new());
        let db = if need.db {
            Some(connect_db(&config).await?)
        } else {
            None
        };
        let redis = if need.redis {
            Some(connect_redis(&config).await?)
        } else {
            None
        };
        let events = if need.nats {
            let url = config.require_nats_url()?;
            Some(EventBus::connect(url, &config.nats_prefix, metrics.clone()).await?)
        } else {
            None
        };
        Self::new(StateParts {
            config,
            components,
            db,
            redis,
            events,
            metrics,
        })
    }

    pub fn db(&self) -> ApiResult<&sqlx::PgPool> {
        self.db
            .as_ref()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no database configured")))
    }

    pub fn redis(&self) -> ApiResult<redis::aio::ConnectionManager> {
        self.redis
            .clone()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no redis configured")))
    }

    pub fn events(&self) -> ApiResult<&EventBus> {
        self.events
            .as_ref()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no NATS configured")))
    }

    /// A Redis key in this deployment's namespace.
    pub fn redis_key(&self, parts: &[&str]) -> String {
        let mut k = self.config.redis_prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }
}
