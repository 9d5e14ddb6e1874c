-- The stage output tables and stage_outcomes grow with every row of the dataset. A primary key
-- over their 64-hex ids is an ART index that every insert updates and every checkpoint writes,
-- and shard writes slowed down as the tables grew (benchmarks/bench_store.py). They become
-- append-only, without keys: each (stage, config key, input item) is written once, which
-- Store.write_shards enforces, and rows of different config keys are separate versions that
-- readers tell apart by their config key.

CREATE TABLE io_pairs_v2 (
    id          VARCHAR NOT NULL,
    config_key  VARCHAR NOT NULL,
    function_id VARCHAR NOT NULL,
    input_json  VARCHAR NOT NULL,
    output_json VARCHAR NOT NULL,
    ordinal     INTEGER NOT NULL,
    created_at  TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO io_pairs_v2 SELECT id, config_key, function_id, input_json, output_json, ordinal, created_at FROM io_pairs;
DROP TABLE io_pairs;
ALTER TABLE io_pairs_v2 RENAME TO io_pairs;

CREATE TABLE prediction_tasks_v2 (
    id            VARCHAR NOT NULL,
    config_key    VARCHAR NOT NULL,
    pair_id       VARCHAR NOT NULL,
    function_id   VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,
    messages_json VARCHAR NOT NULL,
    created_at    TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO prediction_tasks_v2 SELECT id, config_key, pair_id, function_id, kind, messages_json, created_at FROM prediction_tasks;
DROP TABLE prediction_tasks;
ALTER TABLE prediction_tasks_v2 RENAME TO prediction_tasks;

CREATE TABLE attempts_v2 (
    id                 VARCHAR NOT NULL,
    config_key         VARCHAR NOT NULL,
    task_id            VARCHAR NOT NULL,
    turn               INTEGER NOT NULL,
    call_key           VARCHAR NOT NULL,
    model              VARCHAR NOT NULL,
    response           VARCHAR,
    truncated          BOOLEAN NOT NULL,
    extract_status     VARCHAR NOT NULL,
    answer_json        VARCHAR,
    verdict            VARCHAR NOT NULL,
    feedback           VARCHAR NOT NULL,
    actual_output_json VARCHAR,
    created_at         TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO attempts_v2 SELECT id, config_key, task_id, turn, call_key, model, response, truncated, extract_status,
    answer_json, verdict, feedback, actual_output_json, created_at FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_v2 RENAME TO attempts;

CREATE TABLE stage_outcomes_v2 (
    stage      VARCHAR NOT NULL,
    config_key VARCHAR NOT NULL,
    item_id    VARCHAR NOT NULL,
    status     VARCHAR NOT NULL,
    reason     VARCHAR,
    detail     VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO stage_outcomes_v2 SELECT stage, config_key, item_id, status, reason, detail, created_at FROM stage_outcomes;
DROP TABLE stage_outcomes;
ALTER TABLE stage_outcomes_v2 RENAME TO stage_outcomes;
