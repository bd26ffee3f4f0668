//! The operator's connection to the platform's Postgres, where it keeps the rows of the
//! resources it publishes. The runtime owns the schema; the operator never migrates.
//!
//! The pool connects lazily: the operator starts, and serves FaasServices, whether or not
//! Postgres answers. A failure becomes a [`Problem`] for a condition, never a crash.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::text;

/// Connections the operator keeps: reconciles are short and few run at once.
pub const MAX_CONNECTIONS: u32 = 4;
/// How long a reconcile waits for a connection before it reports the database unavailable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest database message put in a condition.
const MAX_MESSAGE: usize = 300;

/// A pool for `url`, connecting on first use. Fails only when `url` is not a Postgres URL;
/// the error never repeats the URL, which holds a password.
pub fn pool(url: &str) -> Result<PgPool, InvalidUrl> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(InvalidUrl);
    }
    let options: PgConnectOptions = url.parse().map_err(|_| InvalidUrl)?;
    let options = options.application_name("faas-operator");
    Ok(PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        .connect_lazy_with(options))
}

/// The database URL is not one sqlx can read.
#[derive(Debug, thiserror::Error)]
#[error(
    "the operator's database URL is not a valid Postgres URL (postgres://user:password@host:port/database)"
)]
pub struct InvalidUrl;

/// Begins a transaction whose row-level security sees only `tenant`'s rows: the runtime's
/// tables with tenant policies check `faas.tenant_id`, and setting it where a table has no
/// policy is harmless, so every transaction sets it.
pub async fn tenant_transaction(
    pool: &PgPool,
    tenant: &str,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('faas.tenant_id', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Why a database step failed, as a condition tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason: `DatabaseUnavailable`, `SchemaMissing` or `DatabaseError`.
    pub reason: &'static str,
    /// What happened, bounded.
    pub message: String,
}

/// Postgres error codes that mean the runtime's migrations have not run.
const UNDEFINED_TABLE: &str = "42P01";
const UNDEFINED_COLUMN: &str = "42703";

impl Problem {
    /// The problem a failed query or connection stands for.
    pub fn of(error: &sqlx::Error) -> Problem {
        match error {
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some(UNDEFINED_TABLE | UNDEFINED_COLUMN)
                ) =>
            {
                Problem {
                    reason: "SchemaMissing",
                    message: bounded(format!(
                        "the runtime's migrations have not been applied to the database: {}",
                        db.message()
                    )),
                }
            }
            sqlx::Error::Database(db) => Problem {
                reason: "DatabaseError",
                message: bounded(format!("the database refused a write: {}", db.message())),
            },
            other => Problem {
                reason: "DatabaseUnavailable",
                message: bounded(format!("cannot reach the database: {other}")),
            },
        }
    }
}

fn bounded(s: String) -> String {
    text::bounded(s, MAX_MESSAGE)
}

/// Reason of the conditions set when the operator has no database configured.
pub const NO_DATABASE: &str = "NoDatabase";
/// Message of those conditions.
pub const NO_DATABASE_MESSAGE: &str = "the operator has no database configured: set FAAS_OPERATOR_DATABASE_URL (Helm value database.secret) to publish this resource";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bad_url_is_refused_without_repeating_it() {
        for url in [
            "mysql://user:hunter2@db/x",
            "postgres://user:hunter2@db:port/x",
            "hunter2",
        ] {
            let err = pool(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_database_is_unavailable() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let pool = pool("postgres://faas:secret@127.0.0.1:1/faas").unwrap();
        let err = pool.acquire().await.unwrap_err();
        let problem = Problem::of(&err);
        assert_eq!(problem.reason, "DatabaseUnavailable");
        assert!(!problem.message.contains("secret"), "{problem:?}");
    }

    #[test]
    fn messages_are_bounded_on_a_char_boundary() {
        let s = bounded("é".repeat(400));
        assert!(s.len() <= MAX_MESSAGE);
        assert!(s.ends_with('…'));
    }
}
