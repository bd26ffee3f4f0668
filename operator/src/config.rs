//! Operator configuration, from flags and environment variables.

use std::net::SocketAddr;

use clap::{ArgAction, Parser, ValueEnum};

/// The Motadata FaaS operator.
#[derive(Parser, Debug, Clone)]
#[command(name = "faas-operator", version, about)]
pub struct Config {
    /// Image of the shared runtime used by FaasServices that do not name one.
    #[arg(
        long,
        env = "FAAS_RUNTIME_IMAGE",
        default_value = "motadata/faas-runtime:0.1.0"
    )]
    pub runtime_image: String,

    /// Default Secret (in each FaasService's namespace) with the Postgres URL under key `url`.
    #[arg(long, env = "FAAS_DATABASE_SECRET", default_value = "faas-database")]
    pub database_secret: String,

    /// Default Secret with the Redis/Dragonfly URL under key `url`.
    #[arg(long, env = "FAAS_CACHE_SECRET", default_value = "faas-cache")]
    pub cache_secret: String,

    /// Default Secret with the NATS URL under key `url`.
    #[arg(long, env = "FAAS_NATS_SECRET", default_value = "faas-nats")]
    pub nats_secret: String,

    /// Default Secret with the HS256 key services verify JWTs with, under key
    /// `jwt-hs256-secret`, for FaasServices without spec.auth.
    #[arg(long, env = "FAAS_AUTH_SECRET", default_value = "faas-auth")]
    pub auth_secret: String,

    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "FAAS_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,

    /// Address of the HTTP server with /metrics, /healthz and /readyz.
    #[arg(long, env = "FAAS_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Log filter, in tracing's EnvFilter syntax (for example `info,faas_operator=debug`).
    #[arg(long, env = "FAAS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "FAAS_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,

    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(
        long,
        env = "FAAS_LEADER_ELECTION",
        action = ArgAction::Set,
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
    )]
    pub leader_election: bool,

    /// Name of the Lease used for leader election.
    #[arg(long, env = "FAAS_LEASE_NAME", default_value = "faas-operator")]
    pub lease_name: String,

    /// Namespace of the Lease. Defaults to POD_NAMESPACE, then `default`.
    #[arg(long, env = "FAAS_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it before another replica takes over.
    #[arg(long, env = "FAAS_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Identity of this replica in the Lease. Defaults to POD_NAME, then the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// DNS domain of the cluster, for the in-cluster URLs of services.
    #[arg(long, env = "FAAS_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// URL of the platform's Postgres (postgres://user:password@host:port/database), where
    /// Agents and PromptTemplates are published. Without it the operator still serves
    /// FaasServices, and Agents and PromptTemplates report that it has no database. Read it
    /// from a Secret (the chart's database.secret); it is never logged.
    #[arg(long, env = "FAAS_OPERATOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,

    /// Reconciles that may run at once per controller.
    #[arg(long, env = "FAAS_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
}

/// A database URL. It holds a password, so it never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, for the connection pool only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseUrl(s.trim().to_string()))
    }
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl Config {
    /// The namespaces to watch; empty means all.
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Namespace of the leader-election Lease.
    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string())
    }

    /// Identity of this replica.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("faas-operator-{}", std::process::id()))
    }

    /// The defaults the builders apply to generated services.
    pub fn defaults(&self) -> crate::faas_service::Defaults {
        crate::faas_service::Defaults {
            runtime_image: self.runtime_image.clone(),
            database_secret: self.database_secret.clone(),
            cache_secret: self.cache_secret.clone(),
            nats_secret: self.nats_secret.clone(),
            auth_secret: self.auth_secret.clone(),
            cluster_domain: self.cluster_domain.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_defaults() {
        let c = Config::try_parse_from([
            "faas-operator",
            "--namespaces",
            "team-a, team-b,",
            "--leader-election=false",
            "--runtime-image",
            "registry.local/faas-runtime:1.2.3",
        ])
        .unwrap();
        assert_eq!(c.watched_namespaces(), vec!["team-a", "team-b"]);
        assert!(!c.leader_election);
        assert_eq!(
            c.defaults().runtime_image,
            "registry.local/faas-runtime:1.2.3"
        );
    }

    #[test]
    fn the_database_url_is_optional_and_never_printed() {
        let c = Config::try_parse_from(["faas-operator"]).unwrap();
        assert!(c.database_url.is_none());
        let c = Config::try_parse_from([
            "faas-operator",
            "--database-url",
            "postgres://faas:hunter2@db:5432/faas",
        ])
        .unwrap();
        let url = c.database_url.as_ref().unwrap();
        assert_eq!(url.expose(), "postgres://faas:hunter2@db:5432/faas");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn invalid_address_is_refused() {
        let err = Config::try_parse_from(["faas-operator", "--http-addr", "nowhere"]).unwrap_err();
        assert!(err.to_string().contains("--http-addr"), "{err}");
    }
}
