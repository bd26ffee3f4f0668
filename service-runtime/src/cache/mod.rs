//! Tenant-scoped cache on Redis (or Dragonfly): get, set with TTL and tags,
//! delete, batch get, invalidation by key prefix or by tag. Every Redis key
//! carries the tenant, so one tenant's keys are invisible to another.

pub mod settings;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use crate::platform::component::ComponentState;
use crate::platform::error::{Problem, problem_responses};
use crate::platform::extract::{Json, Path};
use crate::platform::{ApiError, ApiResult, AppState, Built, ComponentSpec, Principal};
use faas_model::Component;

const MAX_KEY: usize = 512;
const MAX_TAG: usize = 128;
const MAX_TAGS: usize = 32;
const MAX_BATCH: usize = 1000;
const MAX_TTL: u64 = 30 * 86_400;
/// A value, as JSON.
const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The values one batch get returns together.
const MAX_BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// Keys deleted per command when invalidating.
const CHUNK: usize = 500;

/// The cache as the platform serves it.
pub static SPEC: ComponentSpec = ComponentSpec {
    component: Component::Cache,
    openapi,
    openai_routes: &[],
    build,
};

/// The state of the cache's routes.
pub type CacheState = ComponentState<settings::Settings>;

fn build(platform: &AppState) -> anyhow::Result<Built> {
    let settings = settings::Settings::from_source(&platform.config.source)?;
    Ok(Built::routes(router().with_state(ComponentState::new(
        platform.clone(),
        settings,
    ))))
}

fn router() -> Router<CacheState> {
    Router::new()
        .route(
            "/v1/cache/items/{*key}",
            get(get_item).put(put_item).delete(delete_item),
        )
        .route("/v1/cache/batch-get", post(batch_get))
        .route("/v1/cache/invalidate", post(invalidate))
}

#[derive(OpenApi)]
#[openapi(
    paths(get_item, put_item, delete_item, batch_get, invalidate),
    components(schemas(PutItem, Item, BatchGet, BatchResult, InvalidateBody, ByPrefix, ByTag, Invalidated, Problem)),
    tags((name = "cache", description = "Tenant-scoped key/value cache"))
)]
struct Doc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

problem_responses! {
    /// The key breaks the rules for keys; the detail says how.
    Invalid = 422;
    /// The tenant has no item with this key.
    NotFound = 404;
}

/// Keys, tags and prefixes: 1 (prefixes 0) to `max` characters, none of
/// them a control character. Glob characters are allowed; they are escaped
/// wherever a pattern is built.
fn check_text(what: &str, s: &str, min: usize, max: usize) -> ApiResult<()> {
    let n = s.chars().count();
    if n < min || n > max || s.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "{what}: {min} to {max} characters without control characters"
        )));
    }
    Ok(())
}

fn item_key(state: &AppState, tenant: &str, key: &str) -> String {
    state.redis_key(&["cache", tenant, "k", key])
}

fn tag_key(state: &AppState, tenant: &str, tag: &str) -> String {
    state.redis_key(&["cache", tenant, "t", tag])
}

/// Escapes the glob characters of a Redis MATCH pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutItem {
    /// Any JSON value, at most 1 MiB as JSON.
    pub value: Value,
    /// Seconds to keep the item, 1 to 2592000; the service default when absent.
    #[serde(default, deserialize_with = "crate::platform::integer::opt_integer")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_seconds: Option<u64>,
    /// Tags for invalidation, up to 32, each 1 to 128 characters.
    #[serde(default)]
    #[schema(max_items = 32, inline, value_type = Vec<Tag>)]
    pub tags: Vec<String>,
}

/// Keys, tags and prefixes have no control characters.
const PLAIN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

fn text_schema(min: usize, max: usize) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(PLAIN))
        .into()
}

/// A tag in a schema: 1 to 128 characters.
struct Tag;

impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        text_schema(1, MAX_TAG)
    }
}

impl ToSchema for Tag {}

/// A key in a schema: 1 to 512 characters.
struct Key;

impl utoipa::PartialSchema for Key {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        text_schema(1, MAX_KEY)
    }
}

impl ToSchema for Key {}

#[derive(Serialize, ToSchema)]
pub struct Item {
    pub key: String,
    pub value: Value,
    /// Seconds left.
    pub ttl_seconds: Option<i64>,
}

#[utoipa::path(put, path = "/v1/cache/items/{key}", tag = "cache", params(("key" = String, Path, description = "The key: 1 to 512 characters, no control characters", min_length = 1, max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")), request_body = PutItem,
    responses((status = 200, description = "Stored", body = Item)))]
async fn put_item(
    State(state): State<CacheState>,
    p: Principal,
    Path(key): Path<String>,
    Json(input): Json<PutItem>,
) -> ApiResult<Json<Item>> {
    check_text("key", &key, 1, MAX_KEY)?;
    let ttl = input
        .ttl_seconds
        .unwrap_or(state.component().default_ttl_secs);
    if ttl == 0 || ttl > MAX_TTL {
        return Err(ApiError::Validation(format!(
            "ttl_seconds: must be between 1 and {MAX_TTL}"
        )));
    }
    if input.tags.len() > MAX_TAGS {
        return Err(ApiError::Validation(format!("tags: at most {MAX_TAGS}")));
    }
    for t in &input.tags {
        check_text("tags[]", t, 1, MAX_TAG)?;
    }
    let bytes = serde_json::to_vec(&input.value).map_err(ApiError::internal)?;
    if bytes.len() > MAX_VALUE_BYTES {
        return Err(ApiError::Validation(format!(
            "value: at most {MAX_VALUE_BYTES} bytes of JSON"
        )));
    }
    let mut conn = state.redis()?;
    let mut pipe = redis::pipe();
    pipe.atomic()
        .set_ex(item_key(&state, &p.tenant_id, &key), bytes, ttl)
        .ignore();
    for t in &input.tags {
        let tk = tag_key(&state, &p.tenant_id, t);
        pipe.sadd(&tk, &key).ignore();
        // The tag set lives at least as long as its longest-lived item.
        pipe.cmd("EXPIRE").arg(&tk).arg(ttl).arg("GT").ignore();
        pipe.cmd("EXPIRE").arg(&tk).arg(ttl).arg("NX").ignore();
    }
    pipe.query_async::<()>(&mut conn).await?;
    Ok(Json(Item {
        key,
        value: input.value,
        ttl_seconds: Some(ttl as i64),
    }))
}

#[utoipa::path(get, path = "/v1/cache/items/{key}", tag = "cache", params(("key" = String, Path, description = "The key: 1 to 512 characters, no control characters", min_length = 1, max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    responses((status = 200, description = "The item", body = Item), Invalid, NotFound))]
async fn get_item(
    State(state): State<AppState>,
    p: Principal,
    Path(key): Path<String>,
) -> ApiResult<Json<Item>> {
    check_text("key", &key, 1, MAX_KEY)?;
    let mut conn = state.redis()?;
    let k = item_key(&state, &p.tenant_id, &key);
    let (raw, ttl): (Option<Vec<u8>>, i64) =
        redis::pipe().get(&k).ttl(&k).query_async(&mut conn).await?;
    let raw = raw.ok_or_else(|| ApiError::NotFound("no such key".into()))?;
    let value = serde_json::from_slice(&raw).map_err(ApiError::internal)?;
    Ok(Json(Item {
        key,
        value,
        ttl_seconds: (ttl >= 0).then_some(ttl),
    }))
}

#[utoipa::path(delete, path = "/v1/cache/items/{key}", tag = "cache", params(("key" = String, Path, description = "The key: 1 to 512 characters, no control characters", min_length = 1, max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")),
    responses((status = 204, description = "Deleted"), Invalid, NotFound))]
async fn delete_item(
    State(state): State<AppState>,
    p: Principal,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    check_text("key", &key, 1, MAX_KEY)?;
    let mut conn = state.redis()?;
    let n: i64 = conn.del(item_key(&state, &p.tenant_id, &key)).await?;
    if n == 0 {
        return Err(ApiError::NotFound("no such key".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchGet {
    /// 1 to 1000 keys; their values may hold up to 8 MiB together.
    #[schema(min_items = 1, max_items = 1000, inline, value_type = Vec<Key>)]
    pub keys: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    /// Every asked key, with null for a missing one.
    #[schema(value_type = Object)]
    pub items: BTreeMap<String, Value>,
    pub found: usize,
}

#[utoipa::path(post, path = "/v1/cache/batch-get", tag = "cache", request_body = BatchGet,
    responses((status = 200, description = "Every key asked for", body = BatchResult)))]
async fn batch_get(
    State(state): State<AppState>,
    p: Principal,
    Json(input): Json<BatchGet>,
) -> ApiResult<Json<BatchResult>> {
    if input.keys.is_empty() || input.keys.len() > MAX_BATCH {
        return Err(ApiError::Validation(format!("keys: 1 to {MAX_BATCH} keys")));
    }
    for k in &input.keys {
        check_text("keys[]", k, 1, MAX_KEY)?;
    }
    let full: Vec<String> = input
        .keys
        .iter()
        .map(|k| item_key(&state, &p.tenant_id, k))
        .collect();
    let mut conn = state.redis()?;
    // Sizes first, so that a batch of large values is refused before it is read.
    let mut sizes = redis::pipe();
    for k in &full {
        sizes.strlen(k);
    }
    let sizes: Vec<u64> = sizes.query_async(&mut conn).await?;
    let total = sizes.iter().fold(0u64, |acc, n| acc.saturating_add(*n));
    if total > MAX_BATCH_BYTES {
        return Err(ApiError::Validation(format!(
            "keys: their values hold {total} bytes, more than the {MAX_BATCH_BYTES} one batch returns; ask for fewer keys"
        )));
    }
    let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&full).query_async(&mut conn).await?;
    let mut items = BTreeMap::new();
    let mut found = 0;
    for (k, raw) in input.keys.into_iter().zip(raws) {
        let v = match raw {
            Some(r) => {
                found += 1;
                serde_json::from_slice(&r).map_err(ApiError::internal)?
            }
            None => Value::Null,
        };
        items.insert(k, v);
    }
    Ok(Json(BatchResult { items, found }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invalidate {
    /// Delete every key starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Delete every key set with this tag.
    #[serde(default)]
    pub tag: Option<String>,
}

/// Give exactly one of `prefix` and `tag`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "describes the request body; Invalidate reads it")]
enum InvalidateBody {
    Prefix(ByPrefix),
    Tag(ByTag),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "describes the request body; Invalidate reads it")]
struct ByPrefix {
    /// Delete every key starting with this; empty for the whole cache.
    #[schema(max_length = 512, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    prefix: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "describes the request body; Invalidate reads it")]
struct ByTag {
    /// Delete every key set with this tag.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$"
    )]
    tag: String,
}

#[derive(Serialize, ToSchema)]
pub struct Invalidated {
    pub deleted: u64,
}

#[utoipa::path(post, path = "/v1/cache/invalidate", tag = "cache", request_body = InvalidateBody,
    responses((status = 200, description = "How many items were deleted", body = Invalidated)))]
async fn invalidate(
    State(state): State<AppState>,
    p: Principal,
    Json(input): Json<Invalidate>,
) -> ApiResult<Json<Invalidated>> {
    let deleted = match (input.prefix, input.tag) {
        (Some(prefix), None) => {
            // An empty prefix clears the tenant's whole cache.
            check_text("prefix", &prefix, 0, MAX_KEY)?;
            invalidate_prefix(&state, &p.tenant_id, &prefix).await?
        }
        (None, Some(tag)) => {
            check_text("tag", &tag, 1, MAX_TAG)?;
            invalidate_tag(&state, &p.tenant_id, &tag).await?
        }
        _ => {
            return Err(ApiError::Validation(
                "give exactly one of prefix, tag".into(),
            ));
        }
    };
    Ok(Json(Invalidated { deleted }))
}

/// Deletes the tenant's items whose key starts with `prefix`; glob
/// characters in it match only themselves.
async fn invalidate_prefix(state: &AppState, tenant: &str, prefix: &str) -> ApiResult<u64> {
    let mut conn = state.redis()?;
    let pattern = format!("{}*", glob_escape(&item_key(state, tenant, prefix)));
    let mut deleted = 0u64;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        deleted += unlink(&mut conn, &keys).await?;
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Deletes the tenant's items set with `tag`, reading the tag's members a
/// chunk at a time.
async fn invalidate_tag(state: &AppState, tenant: &str, tag: &str) -> ApiResult<u64> {
    let mut conn = state.redis()?;
    let tk = tag_key(state, tenant, tag);
    let mut deleted = 0u64;
    let mut cursor: u64 = 0;
    loop {
        let (next, members): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(&tk)
            .arg(cursor)
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(&mut conn)
            .await?;
        let keys: Vec<String> = members.iter().map(|k| item_key(state, tenant, k)).collect();
        deleted += unlink(&mut conn, &keys).await?;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let _: i64 = conn.del(&tk).await?;
    Ok(deleted)
}

async fn unlink(conn: &mut redis::aio::ConnectionManager, keys: &[String]) -> ApiResult<u64> {
    let mut n = 0u64;
    for chunk in keys.chunks(CHUNK) {
        n += redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<u64>(conn)
            .await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::glob_escape;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
