-- Initial schema. Every output row carries the config key of the stage run that produced it,
-- so a changed setting re-does exactly the work it affects; stage_outcomes holds one status
-- (and drop reason) per input row per stage per config key.

CREATE TABLE runs (
    run_id       VARCHAR PRIMARY KEY,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP,
    status       VARCHAR NOT NULL,
    config_json  VARCHAR NOT NULL,
    summary_json VARCHAR
);

CREATE TABLE ingest_log (
    id           VARCHAR PRIMARY KEY,
    source       VARCHAR NOT NULL,
    locator      VARCHAR NOT NULL,
    bytes_sha256 VARCHAR NOT NULL,
    size_bytes   BIGINT NOT NULL,
    status       VARCHAR NOT NULL,
    reason       VARCHAR,
    detail       VARCHAR,
    raw_id       VARCHAR,
    created_at   TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE raw_files (
    id          VARCHAR PRIMARY KEY,
    source      VARCHAR NOT NULL,
    source_kind VARCHAR NOT NULL,
    origin      VARCHAR NOT NULL,
    path        VARCHAR NOT NULL,
    repo_name   VARCHAR,
    content     VARCHAR NOT NULL,
    size_bytes  BIGINT NOT NULL,
    created_at  TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE functions (
    id              VARCHAR PRIMARY KEY,
    config_key      VARCHAR NOT NULL,
    raw_id          VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    source_kind     VARCHAR NOT NULL,
    origin          VARCHAR NOT NULL,
    model           VARCHAR NOT NULL,
    refcode         VARCHAR NOT NULL,
    input_generator VARCHAR,
    io_description  VARCHAR NOT NULL,
    query           VARCHAR NOT NULL,
    arg_names       VARCHAR NOT NULL,
    entry           VARCHAR NOT NULL,
    seed_ios_json   VARCHAR,          -- recorded pairs of imported functions, re-verified by sample_io
    created_at      TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE io_pairs (
    id          VARCHAR PRIMARY KEY,
    config_key  VARCHAR NOT NULL,
    function_id VARCHAR NOT NULL,
    input_json  VARCHAR NOT NULL,
    output_json VARCHAR NOT NULL,
    ordinal     INTEGER NOT NULL,
    created_at  TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE prediction_tasks (
    id            VARCHAR PRIMARY KEY,
    config_key    VARCHAR NOT NULL,
    pair_id       VARCHAR NOT NULL,
    function_id   VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,
    messages_json VARCHAR NOT NULL,
    created_at    TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE llm_calls (
    key               VARCHAR PRIMARY KEY,
    model             VARCHAR NOT NULL,
    stage             VARCHAR NOT NULL,
    content           VARCHAR,
    finish_reason     VARCHAR,
    truncated         BOOLEAN NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    latency_s         DOUBLE NOT NULL,
    created_at        TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE attempts (
    id                 VARCHAR PRIMARY KEY,
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

CREATE TABLE stage_outcomes (
    stage      VARCHAR NOT NULL,
    config_key VARCHAR NOT NULL,
    item_id    VARCHAR NOT NULL,
    status     VARCHAR NOT NULL,
    reason     VARCHAR,
    detail     VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (stage, config_key, item_id)
);
