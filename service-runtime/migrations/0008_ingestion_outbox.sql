-- Jobs recorded but not yet handed to JetStream, written in the transaction that records
-- the job and removed once its message is published. A sweeper publishes what a process
-- that died in between left here, so no upload waits for its file to be sent again. Ids
-- only: the sweeper reads across tenants and sees no tenant's content.
CREATE TABLE ingestion_outbox (
    tenant_id      text        NOT NULL,
    job_id         uuid        NOT NULL,
    correlation_id text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, job_id),
    FOREIGN KEY (tenant_id, job_id) REFERENCES ingestion_jobs (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX ingestion_outbox_age ON ingestion_outbox (created_at);
