//! What deleting a PromptTemplate does to its rows: they go, or, while Agents still
//! reference the template, they stay retired (the prompt component answers 404 for them).
//! Rows made through the prompt API are never touched.

use sqlx::PgPool;

use crate::kit::database;

/// Marks every resource-managed version of the template retired; returns how many rows
/// changed.
pub async fn retire(pool: &PgPool, tenant: &str, name: &str) -> Result<u64, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, tenant).await?;
    let done = sqlx::query(
        "UPDATE prompt_templates SET retired_at = now() \
         WHERE tenant_id = $1 AND name = $2 AND source = 'resource' AND retired_at IS NULL",
    )
    .bind(tenant)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Deletes every resource-managed version of the template; returns how many rows went.
pub async fn delete(pool: &PgPool, tenant: &str, name: &str) -> Result<u64, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, tenant).await?;
    let done = sqlx::query(
        "DELETE FROM prompt_templates WHERE tenant_id = $1 AND name = $2 AND source = 'resource'",
    )
    .bind(tenant)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}
