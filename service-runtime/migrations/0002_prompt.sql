-- Versioned prompt templates. Every change is a new row; the highest version
-- is the current one.
CREATE TABLE prompt_templates (
    tenant_id      text NOT NULL,
    name           text NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    description    text,
    template       text,
    messages       jsonb,
    variables      jsonb NOT NULL DEFAULT '[]',
    model_defaults jsonb,
    -- 'resource': synced from a PromptTemplate resource, read-only over the API.
    source         text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'resource')),
    content_hash   text NOT NULL,
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, version),
    CHECK ((template IS NULL) <> (messages IS NULL))
);
