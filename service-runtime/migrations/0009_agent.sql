-- The agent component: agents (written by the API and, for Agent resources, by the
-- operator), their runs and steps, and chat sessions with their messages. Every table is
-- tenant-scoped by row-level security on faas.tenant_id.

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

-- One task of an agent: the input, how it ended, and what it used. A run of an agent
-- called as a tool names the run that called it.
CREATE TABLE agent_runs (
    tenant_id      text NOT NULL,
    id             uuid PRIMARY KEY,
    agent_id       uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    agent_name     text NOT NULL,
    agent_revision integer NOT NULL,
    user_id        text NOT NULL,
    session_id     uuid,
    parent_run_id  uuid REFERENCES agent_runs (id) ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    input          text NOT NULL,
    output         text,
    error          text,
    iterations     integer NOT NULL DEFAULT 0,
    prompt_tokens  bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE INDEX agent_runs_agent ON agent_runs (tenant_id, agent_name, started_at);
CREATE INDEX agent_runs_parent ON agent_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
ALTER TABLE agent_runs ENABLE ROW LEVEL SECURITY; ALTER TABLE agent_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_runs_tenant ON agent_runs USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));

-- The steps of a run, in order: each model call and each tool call.
CREATE TABLE agent_steps (
    tenant_id      text NOT NULL,
    run_id         uuid NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    seq            integer NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('model', 'tool')),
    tool           text,
    tool_call_id   text,
    arguments      text,
    output         text,
    error          text,
    prompt_tokens  bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    duration_ms    bigint NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);
ALTER TABLE agent_steps ENABLE ROW LEVEL SECURITY; ALTER TABLE agent_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_steps_tenant ON agent_steps USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));

-- A chat with an agent, owned by one user of the tenant; `summary` is the rolled-up
-- memory of messages no longer kept verbatim.
CREATE TABLE agent_sessions (
    tenant_id      text NOT NULL,
    id             uuid PRIMARY KEY,
    agent_id       uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    user_id        text NOT NULL,
    summary        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz
);
CREATE INDEX agent_sessions_owner ON agent_sessions (tenant_id, agent_id, user_id);
ALTER TABLE agent_sessions ENABLE ROW LEVEL SECURITY; ALTER TABLE agent_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_sessions_tenant ON agent_sessions USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));

CREATE TABLE agent_session_messages (
    tenant_id      text NOT NULL,
    session_id     uuid NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    role           text NOT NULL CHECK (role IN ('user', 'assistant')),
    content        text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, seq)
);
ALTER TABLE agent_session_messages ENABLE ROW LEVEL SECURITY; ALTER TABLE agent_session_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_session_messages_tenant ON agent_session_messages USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
