-- Provider keys are bound to tenants and to a base URL by the platform
-- (FAAS_GATEWAY_CREDENTIALS); a provider names one of those credentials. A key is
-- no longer chosen by the name of an environment variable: providers that named one
-- lose it and are disabled until an admin gives them a credential.
ALTER TABLE gateway_providers
    ADD COLUMN credential text CHECK (credential ~ '^[a-z0-9][a-z0-9-]{0,62}$');

UPDATE gateway_providers
SET enabled = false, api_key_env = NULL, updated_at = now()
WHERE api_key_env IS NOT NULL;

-- The column stays, never read, so replicas of the previous version keep running during a
-- rollout; none of them can store a key variable any more.
ALTER TABLE gateway_providers
    ADD CONSTRAINT gateway_providers_no_key_by_name CHECK (api_key_env IS NULL);
