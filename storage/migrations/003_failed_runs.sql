-- A row left to retry (its LLM call failed on transient errors after all its retries) counts
-- the runs in a row that have left it so; the flow drops it after llm.give_up_after_runs.
ALTER TABLE stage_outcomes ADD COLUMN failed_runs INTEGER;
