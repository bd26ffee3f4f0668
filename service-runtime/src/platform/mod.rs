//! The platform layer every component stands on.

pub mod auth;
pub mod body;
pub mod component;
pub mod config;
pub mod context;
pub mod egress;
pub mod error;
pub mod events;
pub mod extract;
pub mod http_client;
/// Integer fields that also accept integral floats (`3.0`), from the model.
pub use faas_model::integer;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod sse;
pub mod telemetry;

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio_util::sync::CancellationToken;

pub use auth::Principal;
pub use context::RequestContext;
pub use error::{ApiError, ApiResult};

pub use component::{Built, ComponentSpec};
use config::Config;
use events::EventBus;
use faas_model::Backend;
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
    specs: Vec<&'static ComponentSpec>,
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
    /// State of the layer shared by several components, one value per type and process.
    shared: std::sync::Mutex<SharedMap>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

type SharedMap = std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>;

/// What the selected components need from outside.
pub struct Needs {
    pub db: bool,
    pub redis: bool,
    pub nats: bool,
}

pub fn needs(specs: &[&ComponentSpec]) -> Needs {
    let any = |b: Backend| specs.iter().any(|s| s.needs(b));
    Needs {
        db: any(Backend::Database),
        redis: any(Backend::Cache),
        nats: any(Backend::Nats),
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

/// A transaction in which row-level security shows the rows of `tenant` only: tables
/// with a policy on `faas.tenant_id` hide every other tenant's rows, whatever a query
/// forgets.
pub async fn tenant_transaction(
    pool: &sqlx::PgPool,
    tenant: &str,
) -> ApiResult<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// `text` as Postgres can store it: `text` and `jsonb` hold no NUL character, which
/// parsers of binary files, upstream answers and models may produce.
pub fn without_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', ""))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Runs one statement in a [`tenant_transaction`] and commits it; returns the rows it
/// touched.
pub async fn tenant_execute(
    pool: &sqlx::PgPool,
    tenant: &str,
    statement: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> ApiResult<u64> {
    let mut tx = tenant_transaction(pool, tenant).await?;
    let done = statement.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(done.rows_affected())
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
    pub components: Vec<&'static ComponentSpec>,
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
                .flat_map(|c| c.openai_routes.iter().copied())
                .collect(),
            config,
            specs: components,
            shared: Default::default(),
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
    pub async fn connect(
        config: Config,
        components: Vec<&'static ComponentSpec>,
    ) -> anyhow::Result<Self> {
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

    /// The components this process serves.
    pub fn specs(&self) -> &[&'static ComponentSpec] {
        &self.specs
    }

    /// Whether this process serves `component`.
    pub fn serves(&self, component: faas_model::Component) -> bool {
        self.specs.iter().any(|s| s.component == component)
    }

    /// The process-wide value of type `T` of the shared layer, made on first use: state
    /// that components served together must share (a price cache that one invalidates
    /// and another reads) lives here rather than in a static.
    pub fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let value = map
            .entry(std::any::TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        value.downcast().unwrap_or_else(|_| Arc::new(T::default()))
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
