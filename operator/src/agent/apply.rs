//! Publishes an agent to the agent component's table, in a transaction scoped to its tenant
//! (the table has row-level security on `faas.tenant_id`). The revision grows only when the
//! definition's hash changes; the resolved template version follows without a revision.

use sqlx::PgPool;
use uuid::Uuid;

use super::build::Row;
use crate::kit::database;

/// What the table holds for the agent afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// The row holds the definition; `changed` when this call wrote.
    Stored {
        id: Uuid,
        revision: i32,
        changed: bool,
    },
    /// An agent of that name was made through the agent API; it is not overwritten.
    NameTaken,
}

#[derive(sqlx::FromRow)]
struct Current {
    id: Uuid,
    source: String,
    content_hash: String,
    revision: i32,
    prompt_template_version: Option<i32>,
    created_by: Option<String>,
}

/// Inserts or updates the agent's row; writes nothing when it already holds the row.
pub async fn apply(pool: &PgPool, row: &Row) -> Result<Published, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, &row.tenant).await?;
    let current: Option<Current> = sqlx::query_as(
        "SELECT id, source, content_hash, revision, prompt_template_version, created_by FROM agents \
         WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
    )
    .bind(&row.tenant)
    .bind(&row.name)
    .fetch_optional(&mut *tx)
    .await?;
    let published = match current {
        // Made through the API, or by an Agent of another namespace naming the same tenant.
        Some(c) if c.source != "resource" || c.created_by.as_ref() != Some(&row.created_by) => {
            return Ok(Published::NameTaken);
        }
        Some(c)
            if c.content_hash == row.content_hash
                && c.prompt_template_version == row.prompt_template_version =>
        {
            return Ok(Published::Stored {
                id: c.id,
                revision: c.revision,
                changed: false,
            });
        }
        Some(c) => {
            let revision = if c.content_hash == row.content_hash {
                c.revision
            } else {
                c.revision + 1
            };
            sqlx::query(
                "UPDATE agents SET definition = $3, content_hash = $4, revision = $5, \
                 prompt_template_version = $6, updated_at = now() \
                 WHERE tenant_id = $1 AND name = $2",
            )
            .bind(&row.tenant)
            .bind(&row.name)
            .bind(&row.definition)
            .bind(&row.content_hash)
            .bind(revision)
            .bind(row.prompt_template_version)
            .execute(&mut *tx)
            .await?;
            Published::Stored {
                id: c.id,
                revision,
                changed: true,
            }
        }
        None => {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO agents (tenant_id, name, definition, source, content_hash, revision, \
                 prompt_template_version, created_by) \
                 VALUES ($1, $2, $3, 'resource', $4, 1, $5, $6) RETURNING id",
            )
            .bind(&row.tenant)
            .bind(&row.name)
            .bind(&row.definition)
            .bind(&row.content_hash)
            .bind(row.prompt_template_version)
            .bind(&row.created_by)
            .fetch_one(&mut *tx)
            .await?;
            Published::Stored {
                id,
                revision: 1,
                changed: true,
            }
        }
    };
    tx.commit().await?;
    Ok(published)
}
