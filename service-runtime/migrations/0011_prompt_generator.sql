-- The prompt-generator component: Agent definitions generated from descriptions (each
-- attempt's problems kept), and the feedback of the tenant's users on them. Every table is
-- tenant-scoped by row-level security on faas.tenant_id.

CREATE TABLE prompt_generations (
    tenant_id         text NOT NULL,
    id                uuid PRIMARY KEY,          -- v7: ordered by creation
    user_id           text NOT NULL,
    description       text NOT NULL,
    model             text NOT NULL,             -- the gateway model that generated it
    status            text NOT NULL CHECK (status IN ('succeeded', 'rejected')),
    attempts          integer NOT NULL CHECK (attempts > 0),
    name              text,                      -- the Agent's metadata.name
    agent             jsonb,                     -- the whole Agent object, when succeeded
    problems          jsonb NOT NULL DEFAULT '[]',  -- [[problem, ...] per refused attempt]
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    created_agent     text,                      -- the API-managed agent made from it
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'succeeded') = (agent IS NOT NULL))
);
CREATE INDEX prompt_generations_user ON prompt_generations (tenant_id, user_id, id);
ALTER TABLE prompt_generations ENABLE ROW LEVEL SECURITY; ALTER TABLE prompt_generations FORCE ROW LEVEL SECURITY;
CREATE POLICY prompt_generations_tenant ON prompt_generations USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));

-- One rating (1 to 5) and comment per user and generation; a second replaces the first.
CREATE TABLE prompt_generation_feedback (
    tenant_id      text NOT NULL,
    generation_id  uuid NOT NULL REFERENCES prompt_generations (id) ON DELETE CASCADE,
    user_id        text NOT NULL,
    rating         smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (generation_id, user_id)
);
CREATE INDEX prompt_generation_feedback_tenant ON prompt_generation_feedback (tenant_id, updated_at);
ALTER TABLE prompt_generation_feedback ENABLE ROW LEVEL SECURITY; ALTER TABLE prompt_generation_feedback FORCE ROW LEVEL SECURITY;
CREATE POLICY prompt_generation_feedback_tenant ON prompt_generation_feedback USING (tenant_id = current_setting('faas.tenant_id', true)) WITH CHECK (tenant_id = current_setting('faas.tenant_id', true));
