-- Ingestion jobs: an uploaded file on its way into a RAG collection. The file's bytes are
-- kept beside the job until it ends (indexed, failed or cancelled).
CREATE TABLE ingestion_jobs (
    tenant_id    text NOT NULL,
    id           uuid NOT NULL,
    collection   text NOT NULL,
    filename     text,
    title        text,
    -- The format the bytes were found to be, as a media type.
    content_type text NOT NULL,
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    -- SHA-256 of the bytes, hex: one job (and one document) per file and collection.
    checksum     text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'parsing', 'chunking', 'embedding', 'indexed', 'failed', 'cancelled')),
    reason       text,
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- The worker holding the job and until when; a lapsed lease may be taken over.
    lease_owner  uuid,
    lease_until  timestamptz,
    document_id  uuid,
    chunks       integer,
    text_bytes   bigint,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT ingestion_jobs_one_per_file UNIQUE (tenant_id, collection, checksum)
);
CREATE INDEX ingestion_jobs_tenant_recent ON ingestion_jobs (tenant_id, id DESC);
CREATE INDEX ingestion_jobs_tenant_status ON ingestion_jobs (tenant_id, status, id DESC);

CREATE TABLE ingestion_files (
    tenant_id text NOT NULL,
    job_id    uuid NOT NULL,
    bytes     bytea NOT NULL,
    PRIMARY KEY (tenant_id, job_id),
    FOREIGN KEY (tenant_id, job_id) REFERENCES ingestion_jobs (tenant_id, id) ON DELETE CASCADE
);

-- A second wall behind the tenant_id in every query: rows are visible only to a
-- transaction that has set faas.tenant_id to their tenant. FORCE makes it hold for the
-- tables' owner too, which is the role the runtime connects as.
ALTER TABLE ingestion_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingestion_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY ingestion_jobs_tenant ON ingestion_jobs
    USING (tenant_id = current_setting('faas.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));

ALTER TABLE ingestion_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE ingestion_files FORCE ROW LEVEL SECURITY;
CREATE POLICY ingestion_files_tenant ON ingestion_files
    USING (tenant_id = current_setting('faas.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
