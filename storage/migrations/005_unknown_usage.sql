-- llm_calls.prompt_tokens / completion_tokens are NULL when the server's answer did not say
-- (no `usage` in the body, as some proxies and servers send): counting such a call as 0
-- tokens would report a cost that is wrong, so the statistics say "unknown" instead. Rows
-- stored before keep the numbers they have.
ALTER TABLE llm_calls ALTER COLUMN prompt_tokens DROP NOT NULL;
ALTER TABLE llm_calls ALTER COLUMN completion_tokens DROP NOT NULL;
