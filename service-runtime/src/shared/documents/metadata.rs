//! Document metadata (and query filters over it): a flat object of scalars, small enough
//! to be copied onto every chunk of its document, where filters read it.

use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::platform::{ApiError, ApiResult};

/// Keys of one object.
pub const MAX_META_KEYS: usize = 32;
/// Characters of a key.
pub const MAX_META_KEY: usize = 64;
/// Characters of a string value. With the other two this bounds what every chunk
/// carries to about 10 KiB, whatever the document's length.
pub const MAX_META_STRING: usize = 256;

/// Names and keys have no control characters.
const PLAIN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// Metadata and filters: a flat object of strings, numbers, booleans and nulls.
pub fn check_metadata(what: &str, m: &Map<String, Value>) -> ApiResult<()> {
    if m.len() > MAX_META_KEYS {
        return Err(ApiError::Validation(format!(
            "{what}: at most {MAX_META_KEYS} keys"
        )));
    }
    for (k, v) in m {
        if k.is_empty() || k.chars().count() > MAX_META_KEY || k.chars().any(char::is_control) {
            return Err(ApiError::Validation(format!(
                "{what}: keys are 1 to {MAX_META_KEY} characters without control characters"
            )));
        }
        match v {
            Value::String(s) if s.chars().count() > MAX_META_STRING => {
                return Err(ApiError::Validation(format!(
                    "{what}.{k}: strings are at most {MAX_META_STRING} characters"
                )));
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::Validation(format!(
                    "{what}.{k}: values are strings, numbers, booleans or null"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Metadata in a schema: a flat object of at most 32 strings (256 characters),
/// numbers, booleans and nulls.
pub struct Metadata;

impl utoipa::PartialSchema for Metadata {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let scalar = OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(MAX_META_STRING)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::Null));
        let key = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_META_KEY))
            .pattern(Some(PLAIN));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(MAX_META_KEYS))
            .property_names(Some(key))
            .additional_properties(Some(AdditionalProperties::RefOr(scalar.into())))
            .into()
    }
}

impl ToSchema for Metadata {}
