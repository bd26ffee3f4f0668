//! Reading an upload under bounds: a multipart form (`file`, `collection`, optional
//! `metadata` and `title`) or a raw body. The file is counted as it streams in and refused
//! at the first byte past the limit; the text parts have limits of their own.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::platform::ApiError;
use crate::platform::body::{check_text, json_value};
use crate::shared::documents::metadata::check_metadata;

/// Collection names, as the RAG component has them.
pub use crate::shared::documents::MAX_COLLECTION_NAME as MAX_COLLECTION;
pub const COLLECTION_PATTERN: &str = r"^[a-z0-9][a-z0-9._-]*$";
pub const MAX_TITLE: usize = 512;
pub const MAX_FILENAME: usize = 255;
/// The metadata object, as JSON.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Parts of a form.
pub const MAX_PARTS: usize = 8;
/// What a form may add around its file: boundaries, part headers, the text parts.
pub const FORM_OVERHEAD: usize = 128 * 1024;

/// An upload, read and checked.
pub struct Upload {
    pub collection: String,
    pub filename: Option<String>,
    pub title: Option<String>,
    /// The media type the client declared for the file, without parameters.
    pub declared: Option<String>,
    pub metadata: Map<String, Value>,
    pub bytes: bytes::Bytes,
}

pub use crate::shared::documents::check_collection_name as check_collection;

/// A title: at most [`MAX_TITLE`] characters, none a control character.
pub fn check_title(title: &str) -> Result<(), ApiError> {
    if title.chars().count() > MAX_TITLE || title.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "title: at most {MAX_TITLE} characters, no control characters"
        )));
    }
    Ok(())
}

/// The name of the file without any directory, at most [`MAX_FILENAME`] characters.
pub fn clean_filename(name: &str) -> Result<Option<String>, ApiError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    if base.is_empty() {
        return Ok(None);
    }
    if base.chars().count() > MAX_FILENAME || base.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "filename: at most {MAX_FILENAME} characters, no control characters"
        )));
    }
    Ok(Some(base.to_string()))
}

fn media_type(v: &str) -> Option<String> {
    let media = v.split(';').next()?.trim().to_ascii_lowercase();
    (!media.is_empty()).then_some(media)
}

/// The metadata part: a flat JSON object, as documents' metadata is everywhere.
pub fn parse_metadata(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if raw.len() > MAX_METADATA_BYTES {
        return Err(ApiError::Validation(format!(
            "metadata: at most {MAX_METADATA_BYTES} bytes of JSON"
        )));
    }
    let value = json_value(raw).map_err(|e| ApiError::Validation(format!("metadata: {e}")))?;
    check_text(&value).map_err(|e| ApiError::Validation(format!("metadata: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::Validation(
            "metadata: must be a JSON object".into(),
        ));
    };
    // The document store's rule: rag copies metadata onto every chunk and filters on it.
    check_metadata("metadata", &map)?;
    Ok(map)
}

/// Refuses a body whose declared length is already past `limit`, before reading it.
fn check_length(req: &Request, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::PayloadTooLarge(limit)),
        _ => Ok(()),
    }
}

fn too_large(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        || e.to_string().contains("length limit")
}

/// A raw body: the file itself, its type in Content-Type.
pub async fn raw(
    req: Request,
    max_file: usize,
) -> Result<(Option<String>, bytes::Bytes), ApiError> {
    check_length(&req, max_file)?;
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(media_type);
    let bytes = axum::body::to_bytes(req.into_body(), max_file)
        .await
        .map_err(|e| {
            if too_large(&e) {
                ApiError::PayloadTooLarge(max_file)
            } else {
                ApiError::BadRequest("the request body could not be read".into())
            }
        })?;
    Ok((declared, bytes))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, max_file: usize) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(max_file)
    } else {
        ApiError::BadRequest(format!("the form could not be read: {}", e.body_text()))
    }
}

/// Reads a part into memory, refusing it past `limit` bytes with `over`.
async fn read_part(
    field: &mut axum::extract::multipart::Field<'_>,
    limit: usize,
    max_file: usize,
    over: impl Fn() -> ApiError,
) -> Result<bytes::Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, max_file))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(over());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn text_part(name: &str, raw: bytes::Bytes) -> Result<String, ApiError> {
    String::from_utf8(raw.to_vec())
        .map_err(|_| ApiError::Validation(format!("{name}: must be UTF-8 text")))
}

/// A multipart form.
pub async fn form(req: Request, max_file: usize) -> Result<Upload, ApiError> {
    check_length(&req, max_file + FORM_OVERHEAD)?;
    let mut form = Multipart::from_request(req, &()).await.map_err(|e| {
        ApiError::BadRequest(format!("the form could not be read: {}", e.body_text()))
    })?;
    let (mut file, mut collection, mut title, mut metadata) = (None, None, None, None);
    let mut parts = 0usize;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, max_file))?
    {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::Validation(format!(
                "the form has more than {MAX_PARTS} parts"
            )));
        }
        let name = field.name().unwrap_or("").to_string();
        let seen = match name.as_str() {
            "file" => file.is_some(),
            "collection" => collection.is_some(),
            "title" => title.is_some(),
            "metadata" => metadata.is_some(),
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::Validation(format!(
                    "the form has a part {shown:?}; its parts are file, collection, metadata and title"
                )));
            }
        };
        if seen {
            return Err(ApiError::Validation(format!(
                "{name}: given more than once"
            )));
        }
        match name.as_str() {
            "file" => {
                let filename = field.file_name().map(clean_filename).transpose()?.flatten();
                let declared = field.content_type().and_then(media_type);
                let bytes = read_part(&mut field, max_file, max_file, || {
                    ApiError::PayloadTooLarge(max_file)
                })
                .await?;
                file = Some((filename, declared, bytes));
            }
            "collection" => {
                let raw = read_part(&mut field, MAX_COLLECTION, max_file, || {
                    ApiError::Validation(format!("collection: at most {MAX_COLLECTION} characters"))
                })
                .await?;
                collection = Some(text_part("collection", raw)?);
            }
            "title" => {
                let raw = read_part(&mut field, MAX_TITLE * 4, max_file, || {
                    ApiError::Validation(format!("title: at most {MAX_TITLE} characters"))
                })
                .await?;
                title = Some(text_part("title", raw)?);
            }
            _ => {
                let raw = read_part(&mut field, MAX_METADATA_BYTES, max_file, || {
                    ApiError::Validation(format!(
                        "metadata: at most {MAX_METADATA_BYTES} bytes of JSON"
                    ))
                })
                .await?;
                metadata = Some(parse_metadata(&raw)?);
            }
        }
    }
    let (filename, declared, bytes) =
        file.ok_or_else(|| ApiError::Validation("file: the form has no file part".into()))?;
    let collection = collection
        .ok_or_else(|| ApiError::Validation("collection: the form names no collection".into()))?;
    check_collection(&collection)?;
    let title = title.filter(|t| !t.trim().is_empty());
    if let Some(t) = &title {
        check_title(t)?;
    }
    Ok(Upload {
        collection,
        filename,
        title,
        declared,
        metadata: metadata.unwrap_or_default(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_metadata_are_checked() {
        assert!(check_collection("docs-2026.v1").is_ok());
        for bad in ["", "Docs", "-x", "a b", &"a".repeat(64)] {
            assert!(check_collection(bad).is_err(), "{bad}");
        }
        assert_eq!(
            clean_filename("../../etc/passwd").unwrap().as_deref(),
            Some("passwd")
        );
        assert_eq!(
            clean_filename("C:\\dir\\a.pdf").unwrap().as_deref(),
            Some("a.pdf")
        );
        assert_eq!(clean_filename("dir/").unwrap(), None);
        assert!(clean_filename("a\u{0}b").is_err());
        assert_eq!(
            parse_metadata(br#"{"k": 1, "lang": "en"}"#).unwrap()["k"],
            1
        );
        for bad in [
            &b"[1]"[..],
            b"{\"a\": \"\\u0000\"}",
            b"{",
            b"12",
            br#"{"k": [1]}"#,
            br#"{"k": {"nested": true}}"#,
        ] {
            let err = parse_metadata(bad).unwrap_err();
            assert!(matches!(err, ApiError::Validation(_)), "{err:?}");
        }
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(parse_metadata(deep.as_bytes()).is_err());
    }
}
