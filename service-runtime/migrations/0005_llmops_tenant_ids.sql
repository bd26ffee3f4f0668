-- Event ids are chosen by clients, so they are unique per tenant: one tenant
-- using an id neither hides another tenant's event with the same id nor
-- learns that the id is taken.
ALTER TABLE llm_operations DROP CONSTRAINT llm_operations_pkey;
ALTER TABLE llm_operations ADD CONSTRAINT llm_operations_pkey PRIMARY KEY (tenant_id, id);
