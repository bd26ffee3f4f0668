//! Where parsed files go: the RAG index. Until this build has the RAG component's index
//! there is nowhere to store documents, and every step here answers 503.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::platform::{ApiError, ApiResult, AppState, RequestContext};

/// The index, built once with the component.
#[derive(Clone)]
pub struct Index;

/// A collection documents are added to.
#[derive(Clone)]
pub struct Target;

/// One chunk of a document, ready to embed.
pub struct Piece;

/// A document to store.
pub struct Doc {
    pub title: Option<String>,
    pub text: String,
    pub source: Option<String>,
    pub content_type: String,
    pub checksum: String,
    pub metadata: Map<String, Value>,
}

/// A stored document.
pub struct Stored {
    pub document_id: Uuid,
    pub chunks: i32,
    /// The collection held the same content already.
    pub existing: bool,
}

fn missing() -> ApiError {
    ApiError::Unavailable("the RAG index is not part of this build".into())
}

impl Index {
    pub fn new(_state: &AppState) -> anyhow::Result<Self> {
        Ok(Index)
    }

    /// The tenant's collection; 404 when it has none.
    pub async fn collection(&self, _tenant: &str, _name: &str) -> ApiResult<Target> {
        Err(missing())
    }

    pub async fn chunk(&self, _target: &Target, _text: &str) -> Vec<Piece> {
        Vec::new()
    }

    pub async fn embed(
        &self,
        _target: &Target,
        _pieces: &[Piece],
        _ctx: &RequestContext,
    ) -> ApiResult<Vec<Vec<f32>>> {
        Err(missing())
    }

    pub async fn store(
        &self,
        _tenant: &str,
        _target: &Target,
        _doc: Doc,
        _pieces: Vec<Piece>,
        _vectors: Vec<Vec<f32>>,
    ) -> ApiResult<Stored> {
        Err(missing())
    }
}
