-- A template whose PromptTemplate resource is being deleted while Agents still reference
-- it: its rows are kept, and the prompt component answers as if it were gone, until the
-- operator deletes them. NULL for every template in use.
ALTER TABLE prompt_templates ADD COLUMN retired_at timestamptz;
