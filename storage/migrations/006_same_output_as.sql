-- io_pairs.first_of_output (migration 004) held a 64-hex id on every pair, nearly always the
-- pair's own: a random string per row that every commit wrote to the log and every checkpoint
-- compressed again, a fifth to a third of what a pair cost the store (benchmarks/bench_store.py).
-- It becomes same_output_as: the id of the first pair (the smallest id) of the function, under
-- the same config key, with this pair's output when that is another pair, and NULL when this
-- pair is the first with its output, which nearly every pair is. Computed here for every
-- stored pair from its function's pairs (rows written before 004 included), in the table's
-- order.

CREATE TABLE io_pairs_v3 (
    id             VARCHAR NOT NULL,
    config_key     VARCHAR NOT NULL,
    function_id    VARCHAR NOT NULL,
    input_json     VARCHAR NOT NULL,
    output_json    VARCHAR NOT NULL,
    ordinal        INTEGER NOT NULL,
    created_at     TIMESTAMP DEFAULT current_timestamp,
    same_output_as VARCHAR
);
INSERT INTO io_pairs_v3
SELECT id, config_key, function_id, input_json, output_json, ordinal, created_at,
       CASE WHEN first_id <> id THEN first_id END
FROM (
    SELECT *, rowid AS position,
           min(id) OVER (PARTITION BY config_key, function_id, output_json) AS first_id
    FROM io_pairs
)
ORDER BY position;
DROP TABLE io_pairs;
ALTER TABLE io_pairs_v3 RENAME TO io_pairs;
