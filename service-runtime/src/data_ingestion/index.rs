//! Where parsed files go: the RAG component's index, in the same database. This is the
//! one file of the component that uses it.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::platform::{ApiResult, AppState, RequestContext};
use crate::shared::documents::chunk::Chunk;
use crate::shared::documents::{self as rag, Added, Collection, NewDocument, Store as Rag};
use crate::shared::gateway_client::OnBehalfOf;

/// The index, built once with the component.
#[derive(Clone)]
pub struct Index {
    rag: Rag,
}

/// A collection documents are added to.
#[derive(Clone)]
pub struct Target(Collection);

/// One chunk of a document, ready to embed.
pub struct Piece(Chunk);

/// A document to store.
pub struct Doc {
    pub title: Option<String>,
    pub text: String,
    pub source: Option<String>,
    pub content_type: String,
    /// SHA-256 of the file: the same file is one document per collection.
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

impl Index {
    pub fn new(state: &AppState) -> anyhow::Result<Self> {
        Ok(Self {
            rag: Rag::from_state(state)?,
        })
    }

    /// The tenant's collection; 404 when it has none.
    pub async fn collection(&self, tenant: &str, name: &str) -> ApiResult<Target> {
        rag::collection(&self.rag, tenant, name).await.map(Target)
    }

    /// The document the collection already holds for `checksum` (a job done again after
    /// a crash finds the one it stored before).
    pub async fn existing(
        &self,
        tenant: &str,
        target: &Target,
        checksum: &str,
    ) -> ApiResult<Option<Stored>> {
        Ok(
            rag::document_by_checksum(&self.rag, tenant, &target.0, checksum)
                .await?
                .map(|d| Stored {
                    document_id: d.id,
                    chunks: d.chunks,
                    existing: true,
                }),
        )
    }

    /// The chunks of `text`; a text that leaves none is refused (422).
    pub async fn chunk(&self, target: &Target, text: &str) -> ApiResult<Vec<Piece>> {
        let chunks = rag::chunk(&self.rag, &target.0, text).await?;
        Ok(chunks.into_iter().map(Piece).collect())
    }

    /// The vectors of `pieces`. A worker holds no token of the uploader: a collection
    /// whose model the gateway serves is embedded with the request's headers only.
    pub async fn embed(
        &self,
        target: &Target,
        pieces: &[Piece],
        ctx: &RequestContext,
    ) -> ApiResult<Vec<Vec<f32>>> {
        let chunks: Vec<Chunk> = pieces.iter().map(|p| p.0.clone()).collect();
        rag::embed(
            &self.rag,
            &target.0,
            &chunks,
            &OnBehalfOf::headers_only(),
            ctx,
        )
        .await
    }

    /// Stores the document with its chunks in one transaction; the same checksum in the
    /// same collection answers the document stored before and writes nothing.
    pub async fn store(
        &self,
        tenant: &str,
        target: &Target,
        doc: Doc,
        pieces: Vec<Piece>,
        vectors: Vec<Vec<f32>>,
    ) -> ApiResult<Stored> {
        let doc = NewDocument {
            title: doc.title,
            text: doc.text,
            source: doc.source,
            content_type: Some(doc.content_type),
            checksum: Some(doc.checksum),
            metadata: doc.metadata,
        };
        let chunks = pieces.into_iter().map(|p| p.0).collect();
        let added = rag::store(&self.rag, tenant, &target.0, doc, chunks, vectors).await?;
        let existing = matches!(added, Added::Existing(_));
        let document = added.document();
        Ok(Stored {
            document_id: document.id,
            chunks: document.chunks,
            existing,
        })
    }
}
