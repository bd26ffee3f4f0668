CREATE TABLE agents (
    tenant_id      text NOT NULL,
    name           text NOT NULL,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    definition     jsonb NOT NULL,          -- faas_model::agent::Definition as camelCase JSON
    source         text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'resource')),
    content_hash   text NOT NULL,           -- sha256 hex of the canonical definition JSON
    revision       integer NOT NULL DEFAULT 1 CHECK (revision > 0),  -- +1 when content_hash changes
    prompt_template_version integer,        -- the resolved version, for resource-managed agents
    created_by     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name),
    UNIQUE (id)
);
ALTER TABLE agents ENABLE ROW LEVEL SECURITY; ALTER TABLE agents FORCE ROW LEVEL SECURITY;
CREATE POLICY agents_tenant ON agents USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
