//! Settings from the environment and an optional YAML/JSON file (the ConfigMap
//! the operator mounts). The environment wins over the file. Every setting has
//! one name, used both as environment variable and as file key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("setting {name} is required: {reason}")]
    Missing { name: &'static str, reason: String },
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Verify bearer JWTs.
    Jwt(JwtSettings),
    /// Development only: no token, tenant and user taken from headers.
    Disabled,
}

#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    pub hs256_secret: Option<SecretString>,
    pub rs256_public_key_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub tenant_claim: String,
    pub role_claim: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: Option<SecretString>,
    pub db_max_connections: u32,
    pub redis_url: Option<SecretString>,
    pub redis_prefix: String,
    pub nats_url: Option<SecretString>,
    pub nats_prefix: String,
    pub auth: AuthMode,
    pub admin_role: String,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// Requests per second each tenant may make to this replica, with bursts of
    /// `tenant_rate_burst` (FAAS_TENANT_RATE_LIMIT, FAAS_TENANT_RATE_BURST); `None` when off.
    pub tenant_rate_limit: Option<std::num::NonZeroU32>,
    pub tenant_rate_burst: std::num::NonZeroU32,
    /// Origins browsers may call from (FAAS_CORS_ALLOWED_ORIGINS); CORS is off when empty.
    pub cors_allowed_origins: Vec<String>,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub upstream_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    pub nats_max_deliver: i64,
    /// Role that may change every tenant's gateway limits and read llmops figures across
    /// tenants (FAAS_PLATFORM_ADMIN_ROLE).
    pub platform_admin_role: String,
    /// Provider API keys: environment variables named `LLM_API_KEY_*`
    /// (filled from Secrets). Never taken from the config file.
    pub provider_keys: Secrets,
    // --- outgoing calls tenants influence (FAAS_EGRESS_ALLOW, FAAS_GATEWAY_CREDENTIALS) ---
    /// Where such calls may go, and the credentials the platform binds to tenants.
    pub egress: super::egress::EgressSettings,
    /// Where the settings were read from: each component reads its own settings here
    /// when it is built (`Source::parse` and friends name the setting on a bad value).
    pub source: std::sync::Arc<Source>,
}

/// A setting that may hold a credential (a signing key, a URL with a password): `Debug`
/// never shows it, so printing a `Config` cannot leak it, and reading it takes
/// `expose_secret()`, which is easy to find in review.
pub use secrecy::{ExposeSecret, SecretString};

/// Secret values by name; `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Secrets(pub HashMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The source of raw values: environment first, then file. `Debug` shows no value.
#[derive(Clone)]
pub struct Source {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl Source {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::new(env)
    }

    /// Builds a source from explicit variables (tests) plus the file they name.
    pub fn new(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let file = match env.get("FAAS_CONFIG_FILE").filter(|s| !s.is_empty()) {
            Some(path) => read_file(Path::new(path))?,
            None => HashMap::new(),
        };
        Ok(Self { env, file })
    }

    /// A setting, trimmed; `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .or_else(|| self.file.get(name))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// A setting parsed as `T`, or `default` when unset.
    pub fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{v:?} is not valid: {e}"),
            }),
        }
    }

    /// A setting parsed as `T` and within `range`, or `default` when unset.
    pub fn parse_within<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        let v = self.parse(name, default)?;
        if !range.contains(&v) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("must be from {} to {}", range.start(), range.end()),
            });
        }
        Ok(v)
    }

    /// A number of seconds from `min` to `max`, or `default` when unset.
    pub fn secs_within(
        &self,
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<Duration, ConfigError> {
        let v = self.secs(name, default)?;
        if !(min..=max).contains(&v.as_secs_f64()) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("must be from {min} to {max} seconds"),
            });
        }
        Ok(v)
    }

    /// A source of exactly these variables (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::new(env).expect("no FAAS_CONFIG_FILE to read")
    }

    /// A non-negative number of seconds.
    pub fn secs(&self, name: &'static str, default: f64) -> Result<Duration, ConfigError> {
        let v: f64 = self.parse(name, default)?;
        Duration::try_from_secs_f64(v).map_err(|_| ConfigError::Invalid {
            name,
            reason: "must be a non-negative number of seconds".into(),
        })
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("file_keys", &self.file.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn read_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let map = match value {
        serde_yaml::Value::Mapping(m) => m,
        serde_yaml::Value::Null => return Ok(HashMap::new()),
        _ => {
            return Err(ConfigError::File {
                path: path.into(),
                reason: "must be a mapping of setting names to values".into(),
            });
        }
    };
    let mut out = HashMap::new();
    for (k, v) in map {
        let key = k.as_str().ok_or_else(|| ConfigError::File {
            path: path.into(),
            reason: "keys must be strings".into(),
        })?;
        let val = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Null => String::new(),
            _ => {
                return Err(ConfigError::File {
                    path: path.into(),
                    reason: format!("{key}: value must be a string, number or boolean"),
                });
            }
        };
        out.insert(key.to_string(), val);
    }
    Ok(out)
}

/// `https://a.example.com,https://b.example.com`: exact origins, scheme and host (and port).
fn cors_origins(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for origin in raw.iter().flat_map(|r| r.split(',')).map(str::trim) {
        if origin.is_empty() {
            continue;
        }
        let (scheme, rest) = origin.split_once("://").unwrap_or(("", ""));
        let ok = matches!(scheme, "http" | "https")
            && !rest.is_empty()
            && !rest.contains(['/', '*', ' '])
            && origin.is_ascii();
        if !ok {
            return Err(ConfigError::Invalid {
                name: "FAAS_CORS_ALLOWED_ORIGINS",
                reason: format!(
                    "{origin:?} is not an origin; expected scheme://host[:port], comma-separated"
                ),
            });
        }
        out.push(origin.to_string());
    }
    Ok(out)
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Source::from_env()?)
    }

    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        let auth = match src.get("FAAS_AUTH").as_deref() {
            Some("jwt") | None => {
                let jwt = JwtSettings {
                    hs256_secret: src.get("FAAS_JWT_HS256_SECRET").map(SecretString::from),
                    rs256_public_key_file: src
                        .get("FAAS_JWT_RS256_PUBLIC_KEY_FILE")
                        .map(PathBuf::from),
                    jwks_file: src.get("FAAS_JWT_JWKS_FILE").map(PathBuf::from),
                    issuer: src.get("FAAS_JWT_ISSUER"),
                    audience: src.get("FAAS_JWT_AUDIENCE"),
                    tenant_claim: src
                        .get("FAAS_JWT_TENANT_CLAIM")
                        .unwrap_or_else(|| "tenant_id".into()),
                    role_claim: src
                        .get("FAAS_JWT_ROLE_CLAIM")
                        .unwrap_or_else(|| "roles".into()),
                };
                if jwt.hs256_secret.is_none()
                    && jwt.rs256_public_key_file.is_none()
                    && jwt.jwks_file.is_none()
                {
                    return Err(ConfigError::Missing {
                        name: "FAAS_JWT_HS256_SECRET",
                        reason: "JWT authentication needs FAAS_JWT_HS256_SECRET, FAAS_JWT_RS256_PUBLIC_KEY_FILE \
                                 or FAAS_JWT_JWKS_FILE (or FAAS_AUTH=disabled for development)"
                            .into(),
                    });
                }
                if let Some(s) = &jwt.hs256_secret
                    && s.expose_secret().len() < 16
                {
                    return Err(ConfigError::Invalid {
                        name: "FAAS_JWT_HS256_SECRET",
                        reason: "must be at least 16 bytes".into(),
                    });
                }
                AuthMode::Jwt(jwt)
            }
            Some("disabled") => AuthMode::Disabled,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "FAAS_AUTH",
                    reason: format!("{other:?}: expected \"jwt\" or \"disabled\""),
                });
            }
        };
        let log_format = match src.get("FAAS_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "FAAS_LOG_FORMAT",
                    reason: format!("{other:?}: expected \"json\" or \"text\""),
                });
            }
        };
        let prefix_ok = |name: &'static str, v: String| -> Result<String, ConfigError> {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "must be letters, digits, '-' or '_'".into(),
                });
            }
            Ok(v)
        };
        let max_body_bytes: usize = src.parse("FAAS_MAX_BODY_BYTES", 2 * 1024 * 1024)?;
        if max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "FAAS_MAX_BODY_BYTES",
                reason: "must be greater than zero".into(),
            });
        }
        let tenant_rate: u32 = src.parse("FAAS_TENANT_RATE_LIMIT", 1000)?;
        let burst: u32 = src.parse(
            "FAAS_TENANT_RATE_BURST",
            tenant_rate.saturating_mul(2).max(1),
        )?;
        let tenant_rate_burst = std::num::NonZeroU32::new(burst).ok_or(ConfigError::Invalid {
            name: "FAAS_TENANT_RATE_BURST",
            reason: "must be greater than zero".into(),
        })?;
        let cors_allowed_origins = cors_origins(src.get("FAAS_CORS_ALLOWED_ORIGINS"))?;
        Ok(Config {
            listen: src.parse("FAAS_LISTEN", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            database_url: src.get("DATABASE_URL").map(SecretString::from),
            db_max_connections: src.parse("FAAS_DB_MAX_CONNECTIONS", 10)?,
            redis_url: src.get("REDIS_URL").map(SecretString::from),
            redis_prefix: prefix_ok(
                "FAAS_REDIS_PREFIX",
                src.get("FAAS_REDIS_PREFIX")
                    .unwrap_or_else(|| "faas".into()),
            )?,
            nats_url: src.get("NATS_URL").map(SecretString::from),
            nats_prefix: prefix_ok(
                "FAAS_NATS_PREFIX",
                src.get("FAAS_NATS_PREFIX").unwrap_or_else(|| "faas".into()),
            )?,
            auth,
            admin_role: src.get("FAAS_ADMIN_ROLE").unwrap_or_else(|| "admin".into()),
            request_timeout: src.secs("FAAS_REQUEST_TIMEOUT_SECS", 120.0)?,
            max_body_bytes,
            tenant_rate_limit: std::num::NonZeroU32::new(tenant_rate),
            tenant_rate_burst,
            cors_allowed_origins,
            shutdown_grace: src.secs("FAAS_SHUTDOWN_GRACE_SECS", 25.0)?,
            log_format,
            otlp_endpoint: src.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            service_name: src
                .get("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| "faas-runtime".into()),
            upstream_timeout: src.secs("FAAS_UPSTREAM_TIMEOUT_SECS", 60.0)?,
            breaker_failures: src.parse("FAAS_BREAKER_FAILURES", 5)?,
            breaker_cooldown: src.secs("FAAS_BREAKER_COOLDOWN_SECS", 30.0)?,
            nats_max_deliver: src.parse("FAAS_NATS_MAX_DELIVER", 5)?,
            platform_admin_role: src
                .get("FAAS_PLATFORM_ADMIN_ROLE")
                .unwrap_or_else(|| "platform-admin".into()),
            provider_keys: Secrets(
                src.env
                    .iter()
                    .filter(|(k, v)| k.starts_with("LLM_API_KEY_") && !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            // --- outgoing calls tenants influence ---
            egress: egress_settings(src)?,
            source: std::sync::Arc::new(src.clone()),
        })
    }

    /// A configuration for tests and tools: HS256 with the given secret.
    pub fn for_tests(secret: &str) -> Self {
        let mut env = HashMap::new();
        env.insert("FAAS_JWT_HS256_SECRET".to_string(), secret.to_string());
        env.insert("FAAS_LISTEN".to_string(), "127.0.0.1:0".to_string());
        Self::from_source(&Source::new(env).expect("no file")).expect("valid test config")
    }

    pub fn require_database_url(&self) -> Result<&str, ConfigError> {
        self.database_url
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or(ConfigError::Missing {
                name: "DATABASE_URL",
                reason: "the selected components store state in Postgres".into(),
            })
    }

    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or(ConfigError::Missing {
                name: "REDIS_URL",
                reason: "the selected components use Redis".into(),
            })
    }

    pub fn require_nats_url(&self) -> Result<&str, ConfigError> {
        self.nats_url
            .as_ref()
            .map(|s| s.expose_secret())
            .ok_or(ConfigError::Missing {
                name: "NATS_URL",
                reason: "the selected components use NATS JetStream".into(),
            })
    }
}

/// The egress allowlist, then the credentials (whose base URLs it must allow).
fn egress_settings(src: &Source) -> Result<super::egress::EgressSettings, ConfigError> {
    use super::egress::{
        ALLOW_SETTING, CREDENTIALS_SETTING, CredentialSet, EgressPolicy, PUBLIC_SETTING,
    };
    let policy = EgressPolicy::parse(&src.get(ALLOW_SETTING).unwrap_or_default())
        .map_err(|reason| ConfigError::Invalid {
            name: ALLOW_SETTING,
            reason,
        })?
        .with_public(src.parse(PUBLIC_SETTING, true)?);
    let credentials = match src.get(CREDENTIALS_SETTING) {
        None => CredentialSet::default(),
        Some(text) => CredentialSet::parse(&text, &src.env, &policy).map_err(|reason| {
            ConfigError::Invalid {
                name: CREDENTIALS_SETTING,
                reason,
            }
        })?,
    };
    Ok(super::egress::EgressSettings {
        policy: std::sync::Arc::new(policy),
        credentials: std::sync::Arc::new(credentials),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_auth_is_an_error_naming_the_setting() {
        let err = Config::from_source(&Source::new(env(&[])).unwrap()).unwrap_err();
        assert!(err.to_string().contains("FAAS_JWT_HS256_SECRET"), "{err}");
    }

    #[test]
    fn auth_disabled_only_when_asked() {
        let c =
            Config::from_source(&Source::new(env(&[("FAAS_AUTH", "disabled")])).unwrap()).unwrap();
        assert!(matches!(c.auth, AuthMode::Disabled));
        let err =
            Config::from_source(&Source::new(env(&[("FAAS_AUTH", "off")])).unwrap()).unwrap_err();
        assert!(err.to_string().contains("FAAS_AUTH"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let e = env(&[("FAAS_AUTH", "disabled"), ("FAAS_LISTEN", "nope")]);
        let err = Config::from_source(&Source::new(e).unwrap()).unwrap_err();
        assert!(err.to_string().contains("FAAS_LISTEN"), "{err}");
        let e = env(&[
            ("FAAS_AUTH", "disabled"),
            ("FAAS_REQUEST_TIMEOUT_SECS", "-1"),
        ]);
        let err = Config::from_source(&Source::new(e).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("FAAS_REQUEST_TIMEOUT_SECS"),
            "{err}"
        );
        let e = env(&[
            ("FAAS_AUTH", "disabled"),
            ("FAAS_DB_MAX_CONNECTIONS", "many"),
        ]);
        let err = Config::from_source(&Source::new(e).unwrap()).unwrap_err();
        assert!(err.to_string().contains("FAAS_DB_MAX_CONNECTIONS"), "{err}");
    }

    #[test]
    fn debug_output_hides_credentials() {
        let e = env(&[
            ("FAAS_JWT_HS256_SECRET", "a-signing-key-of-32-characters!!"),
            ("DATABASE_URL", "postgres://faas:pg-password@db/faas"),
            ("REDIS_URL", "redis://:redis-password@cache"),
            ("NATS_URL", "nats://user:nats-password@nats"),
        ]);
        let c = Config::from_source(&Source::new(e).unwrap()).unwrap();
        let shown = format!("{c:?}");
        for secret in [
            "a-signing-key",
            "pg-password",
            "redis-password",
            "nats-password",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert_eq!(
            c.database_url.as_ref().map(|s| s.expose_secret()),
            Some("postgres://faas:pg-password@db/faas")
        );
    }

    #[test]
    fn file_values_apply_and_env_wins() {
        let dir = std::env::temp_dir().join(format!("faas-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            "FAAS_AUTH: disabled\nFAAS_LISTEN: 127.0.0.1:9000\nFAAS_MAX_BODY_BYTES: 1000\nFAAS_CACHE_DEFAULT_TTL_SECS: 60\n",
        )
        .unwrap();
        let e = env(&[
            ("FAAS_CONFIG_FILE", path.to_str().unwrap()),
            ("FAAS_MAX_BODY_BYTES", "2000"),
        ]);
        let c = Config::from_source(&Source::new(e).unwrap()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_body_bytes, 2000);
        assert_eq!(
            c.source.parse("FAAS_CACHE_DEFAULT_TTL_SECS", 0u64).unwrap(),
            60,
            "a component's setting is read from the file too"
        );
        std::fs::write(&path, "- a list\n").unwrap();
        let e = env(&[("FAAS_CONFIG_FILE", path.to_str().unwrap())]);
        assert!(matches!(Source::new(e), Err(ConfigError::File { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rate_limit_and_cors_settings() {
        let c =
            Config::from_source(&Source::new(env(&[("FAAS_AUTH", "disabled")])).unwrap()).unwrap();
        assert_eq!(c.tenant_rate_limit.map(|n| n.get()), Some(1000));
        assert_eq!(c.tenant_rate_burst.get(), 2000);
        assert!(c.cors_allowed_origins.is_empty());
        let e = env(&[
            ("FAAS_AUTH", "disabled"),
            ("FAAS_TENANT_RATE_LIMIT", "0"),
            (
                "FAAS_CORS_ALLOWED_ORIGINS",
                "https://app.example.com, http://localhost:3000",
            ),
        ]);
        let c = Config::from_source(&Source::new(e).unwrap()).unwrap();
        assert_eq!(c.tenant_rate_limit, None);
        assert_eq!(
            c.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        for bad in ["*", "app.example.com", "https://a.example.com/path"] {
            let e = env(&[
                ("FAAS_AUTH", "disabled"),
                ("FAAS_CORS_ALLOWED_ORIGINS", bad),
            ]);
            let err = Config::from_source(&Source::new(e).unwrap()).unwrap_err();
            assert!(
                err.to_string().contains("FAAS_CORS_ALLOWED_ORIGINS"),
                "{err}"
            );
        }
    }

    #[test]
    fn egress_settings_are_read_and_a_wrong_entry_names_its_setting() {
        let creds = r#"[{"name": "openai", "tenants": "*", "base_url": "https://api.openai.com/v1", "key_env": "LLM_API_KEY_OPENAI"}]"#;
        let e = env(&[
            ("FAAS_AUTH", "disabled"),
            ("FAAS_EGRESS_ALLOW", "10.1.0.0/16 vllm.ml.svc.cluster.local"),
            ("FAAS_GATEWAY_CREDENTIALS", creds),
            ("LLM_API_KEY_OPENAI", "sk-from-a-secret"),
        ]);
        let c = Config::from_source(&Source::new(e).unwrap()).unwrap();
        assert!(c.egress.policy.allows_host("vllm.ml.svc.cluster.local"));
        let cred = c.egress.credentials.for_tenant("openai", "anyone").unwrap();
        assert_eq!(cred.key.expose_secret(), "sk-from-a-secret");
        assert!(!format!("{c:?}").contains("sk-from-a-secret"));
        let key = ("LLM_API_KEY_OPENAI", "sk-from-a-secret");
        for (name, value, extra) in [
            ("FAAS_EGRESS_ALLOW", "10.0.0.0/33", vec![]),
            ("FAAS_EGRESS_PUBLIC", "sometimes", vec![]),
            // The variable is not set.
            ("FAAS_GATEWAY_CREDENTIALS", creds, vec![]),
            // The base URL is not allowed when only the allowlist may be reached.
            (
                "FAAS_GATEWAY_CREDENTIALS",
                creds,
                vec![key, ("FAAS_EGRESS_PUBLIC", "false")],
            ),
        ] {
            let mut e = env(&extra);
            e.insert("FAAS_AUTH".into(), "disabled".into());
            e.insert(name.into(), value.into());
            let err = Config::from_source(&Source::new(e).unwrap()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
}
