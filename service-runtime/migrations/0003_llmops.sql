-- LLM-operation history and the pricing table used for cost.
CREATE TABLE llm_operations (
    id             uuid PRIMARY KEY,
    tenant_id      text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    user_id        text,
    agent_id       text,
    model          text NOT NULL,
    provider       text NOT NULL DEFAULT '',
    operation      text NOT NULL DEFAULT 'chat',
    tokens_in      bigint NOT NULL DEFAULT 0 CHECK (tokens_in >= 0),
    tokens_out     bigint NOT NULL DEFAULT 0 CHECK (tokens_out >= 0),
    latency_ms     double precision NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    cost_usd       double precision NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    status         text NOT NULL CHECK (status IN ('ok', 'error')),
    error          text,
    cached         boolean NOT NULL DEFAULT false,
    correlation_id text,
    request_id     text,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_operations_tenant_time ON llm_operations (tenant_id, occurred_at DESC, id DESC);
CREATE INDEX llm_operations_tenant_model_time ON llm_operations (tenant_id, model, occurred_at DESC);

-- tenant_id '' holds the defaults; a tenant's own row overrides them.
CREATE TABLE model_pricing (
    tenant_id          text NOT NULL DEFAULT '',
    model              text NOT NULL,
    input_per_million  double precision NOT NULL CHECK (input_per_million >= 0),
    output_per_million double precision NOT NULL CHECK (output_per_million >= 0),
    updated_by         text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, model)
);

INSERT INTO model_pricing (tenant_id, model, input_per_million, output_per_million) VALUES
    ('', 'gpt-4o', 2.50, 10.00),
    ('', 'gpt-4o-mini', 0.15, 0.60),
    ('', 'gpt-4.1', 2.00, 8.00),
    ('', 'gpt-4.1-mini', 0.40, 1.60),
    ('', 'gpt-4.1-nano', 0.10, 0.40),
    ('', 'o3-mini', 1.10, 4.40),
    ('', 'text-embedding-3-small', 0.02, 0),
    ('', 'text-embedding-3-large', 0.13, 0),
    ('', 'claude-3-5-haiku-latest', 0.80, 4.00),
    ('', 'claude-3-5-sonnet-latest', 3.00, 15.00),
    ('', 'claude-sonnet-4-0', 3.00, 15.00),
    ('', 'claude-opus-4-0', 15.00, 75.00);
