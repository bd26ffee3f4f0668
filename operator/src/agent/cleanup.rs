//! What deleting an Agent does to its row: it goes. An agent of the same name made through
//! the agent API, or published by an Agent of another namespace, is never touched.

use sqlx::PgPool;

use crate::kit::database;

/// Deletes the row `owner` (see [`super::build::owner`]) published; returns whether there
/// was one.
pub async fn delete(
    pool: &PgPool,
    tenant: &str,
    name: &str,
    owner: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = database::tenant_transaction(pool, tenant).await?;
    let done = sqlx::query(
        "DELETE FROM agents \
         WHERE tenant_id = $1 AND name = $2 AND source = 'resource' AND created_by = $3",
    )
    .bind(tenant)
    .bind(name)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}
