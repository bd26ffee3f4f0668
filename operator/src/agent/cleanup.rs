//! What deleting an Agent does to its row: it goes. An agent made through the agent API
//! under the same name is never touched.

use sqlx::PgPool;

use crate::kit::database;

/// Deletes the resource-managed row of the agent; returns whether there was one.
pub async fn delete(pool: &PgPool, tenant: &str, name: &str) -> Result<bool, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, tenant).await?;
    let done = sqlx::query(
        "DELETE FROM agents WHERE tenant_id = $1 AND name = $2 AND source = 'resource'",
    )
    .bind(tenant)
    .bind(name)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}
