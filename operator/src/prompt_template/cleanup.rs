//! What deleting a PromptTemplate does to its rows: they go, or, while Agents still
//! reference the template, they stay retired (the prompt component answers 404 for them).
//! Rows made through the prompt API, or published by a PromptTemplate of another
//! namespace, are never touched.

use sqlx::PgPool;

use crate::kit::database;

/// Marks every resource-managed version of the template retired; returns how many rows
/// changed.
pub async fn retire(
    pool: &PgPool,
    tenant: &str,
    name: &str,
    owner: &str,
) -> Result<u64, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, tenant).await?;
    let done = sqlx::query(
        "UPDATE prompt_templates SET retired_at = now() \
         WHERE tenant_id = $1 AND name = $2 AND source = 'resource' AND created_by = $3 \
         AND retired_at IS NULL",
    )
    .bind(tenant)
    .bind(name)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Deletes every resource-managed version of the template; returns how many rows went.
pub async fn delete(
    pool: &PgPool,
    tenant: &str,
    name: &str,
    owner: &str,
) -> Result<u64, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, tenant).await?;
    let done = sqlx::query(
        "DELETE FROM prompt_templates \
         WHERE tenant_id = $1 AND name = $2 AND source = 'resource' AND created_by = $3",
    )
    .bind(tenant)
    .bind(name)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
