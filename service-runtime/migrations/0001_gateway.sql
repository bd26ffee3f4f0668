-- Provider registry and per-tenant limits of the gateway.
CREATE TABLE gateway_providers (
    id          uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('openai', 'anthropic', 'local')),
    base_url    text NOT NULL DEFAULT '',
    -- Name of the environment variable that holds the API key (filled from a
    -- Secret); the key itself is never stored.
    api_key_env text,
    models      text[] NOT NULL DEFAULT '{}',
    priority    integer NOT NULL DEFAULT 100,
    timeout_ms  integer NOT NULL DEFAULT 60000 CHECK (timeout_ms > 0),
    max_retries integer NOT NULL DEFAULT 2 CHECK (max_retries >= 0),
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE INDEX gateway_providers_tenant_priority ON gateway_providers (tenant_id, priority);

CREATE TABLE gateway_limits (
    tenant_id           text PRIMARY KEY,
    requests_per_minute integer CHECK (requests_per_minute >= 0),
    tokens_per_minute   integer CHECK (tokens_per_minute >= 0),
    budget_usd          double precision CHECK (budget_usd >= 0),
    budget_period       text NOT NULL DEFAULT 'month' CHECK (budget_period IN ('day', 'month')),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
