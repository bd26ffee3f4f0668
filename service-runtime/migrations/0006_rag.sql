-- Collections, documents and chunks of the rag component. Every row carries its
-- tenant; every query names it, and row-level security (FORCE: the runtime owns
-- these tables) hides other tenants' rows from a transaction that has not set
-- `faas.tenant_id` to their tenant.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE rag_collections (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL,
    name            text        NOT NULL,
    description     text,
    embedding_model text        NOT NULL,
    dimensions      integer     NOT NULL,
    chunk_tokens    integer     NOT NULL,
    chunk_overlap   integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE rag_documents (
    tenant_id     text        NOT NULL,
    id            uuid        NOT NULL,
    collection_id uuid        NOT NULL,
    title         text,
    source        text,
    content_type  text,
    checksum      text        NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    content       text        NOT NULL,
    chunks        integer     NOT NULL DEFAULT 0,
    tokens        bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    indexed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, collection_id, checksum),
    FOREIGN KEY (tenant_id, collection_id) REFERENCES rag_collections (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX rag_documents_page ON rag_documents (tenant_id, collection_id, id);

CREATE TABLE rag_chunks (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     text        NOT NULL,
    collection_id uuid        NOT NULL,
    document_id   uuid        NOT NULL,
    ord           integer     NOT NULL,
    heading       text,
    content       text        NOT NULL,
    tokens        integer     NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    dims          integer     NOT NULL,
    embedding     vector      NOT NULL,
    tsv           tsvector    GENERATED ALWAYS AS
                  (to_tsvector('english', coalesce(heading, '') || ' ' || content)) STORED,
    UNIQUE (tenant_id, document_id, ord),
    FOREIGN KEY (tenant_id, document_id) REFERENCES rag_documents (tenant_id, id) ON DELETE CASCADE,
    CHECK (vector_dims(embedding) = dims)
);
-- Vectors inline: exact scans read them without detoasting.
ALTER TABLE rag_chunks ALTER COLUMN embedding SET STORAGE PLAIN;
CREATE INDEX rag_chunks_scope ON rag_chunks (tenant_id, collection_id);
CREATE INDEX rag_chunks_tsv ON rag_chunks USING gin (tsv);
CREATE INDEX rag_chunks_metadata ON rag_chunks USING gin (metadata jsonb_path_ops);
-- One HNSW index per dimension a collection may have (cosine distance).
CREATE INDEX rag_chunks_hnsw_384 ON rag_chunks
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384;
CREATE INDEX rag_chunks_hnsw_768 ON rag_chunks
    USING hnsw ((embedding::vector(768)) vector_cosine_ops) WHERE dims = 768;
CREATE INDEX rag_chunks_hnsw_1024 ON rag_chunks
    USING hnsw ((embedding::vector(1024)) vector_cosine_ops) WHERE dims = 1024;
CREATE INDEX rag_chunks_hnsw_1536 ON rag_chunks
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dims = 1536;

ALTER TABLE rag_collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_collections FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON rag_collections
    USING (tenant_id = current_setting('faas.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
ALTER TABLE rag_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON rag_documents
    USING (tenant_id = current_setting('faas.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
ALTER TABLE rag_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE rag_chunks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON rag_chunks
    USING (tenant_id = current_setting('faas.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
