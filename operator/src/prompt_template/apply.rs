//! Publishes a template to the prompt component's table: a new version only when the content
//! hash changed, so applying the same content again writes nothing.

use sqlx::PgPool;

use super::build::Row;
use crate::kit::database;

/// What the table holds for the template afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// The latest version has the content; `created` when this call inserted it.
    Version { version: i32, created: bool },
    /// A template of that name was made through the prompt API or by another resource; it
    /// is not overwritten.
    NameTaken,
}

/// The latest version of a template, as far as publishing cares.
#[derive(sqlx::FromRow)]
struct Latest {
    version: i32,
    source: String,
    content_hash: String,
    retired: bool,
    created_by: Option<String>,
}

/// Inserts the next version when the content changed, in one transaction that locks the
/// latest version so two writers cannot both add one. A template the deletion of its
/// resource had retired, and that is declared again, is served again.
pub async fn apply(pool: &PgPool, row: &Row) -> Result<Published, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, &row.tenant).await?;
    let latest: Option<Latest> = sqlx::query_as(
        "SELECT version, source, content_hash, retired_at IS NOT NULL AS retired, created_by \
         FROM prompt_templates WHERE tenant_id = $1 AND name = $2 \
         ORDER BY version DESC LIMIT 1 FOR UPDATE",
    )
    .bind(&row.tenant)
    .bind(&row.name)
    .fetch_optional(&mut *tx)
    .await?;
    let (version, created) = match latest {
        // Made through the API, or by a PromptTemplate of another namespace naming the
        // same tenant.
        Some(l) if l.source != "resource" || l.created_by.as_ref() != Some(&row.created_by) => {
            return Ok(Published::NameTaken);
        }
        Some(l) if l.content_hash == row.content_hash && !l.retired => {
            return Ok(Published::Version {
                version: l.version,
                created: false,
            });
        }
        Some(l) if l.content_hash == row.content_hash => (l.version, false),
        Some(l) => (insert(&mut tx, row, l.version + 1).await?, true),
        None => (insert(&mut tx, row, 1).await?, true),
    };
    sqlx::query(
        "UPDATE prompt_templates SET retired_at = NULL \
         WHERE tenant_id = $1 AND name = $2 AND source = 'resource' AND created_by = $3 \
         AND retired_at IS NOT NULL",
    )
    .bind(&row.tenant)
    .bind(&row.name)
    .bind(&row.created_by)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Published::Version { version, created })
}

async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    row: &Row,
    version: i32,
) -> Result<i32, sqlx::Error> {
    let c = &row.content;
    sqlx::query(
        "INSERT INTO prompt_templates (tenant_id, name, version, description, template, messages, \
         variables, model_defaults, source, content_hash, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'resource', $9, $10)",
    )
    .bind(&row.tenant)
    .bind(&row.name)
    .bind(version)
    .bind(&c.description)
    .bind(&c.template)
    .bind(c.messages.as_ref().map(sqlx::types::Json))
    .bind(sqlx::types::Json(&c.variables))
    .bind(&c.model_defaults)
    .bind(&row.content_hash)
    .bind(&row.created_by)
    .execute(&mut **tx)
    .await?;
    Ok(version)
}
