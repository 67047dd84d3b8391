-- Control tables (CONTRACT §5). Idempotent; run once per file (the warehouse checks a marker).
CREATE SCHEMA IF NOT EXISTS cxone;
CREATE SCHEMA IF NOT EXISTS cxone_sync;

CREATE TABLE IF NOT EXISTS cxone_sync.file_audit (
    uri VARCHAR NOT NULL,
    version_id VARCHAR,
    sha256 VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    job_id VARCHAR NOT NULL,
    job_completed_at TIMESTAMPTZ NOT NULL,
    category VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    partition_key VARCHAR NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS cxone_sync.watermarks (
    category VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    high_watermark TIMESTAMPTZ NOT NULL,
    last_partition_key VARCHAR NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (category, data_type)
);

CREATE TABLE IF NOT EXISTS cxone_sync.partition_loads (
    category VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    partition_key VARCHAR NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL,
    files INTEGER NOT NULL,
    files_skipped INTEGER NOT NULL,
    rows_read BIGINT NOT NULL,
    rows_inserted BIGINT NOT NULL,
    rows_updated BIGINT NOT NULL,
    rows_stale BIGINT NOT NULL,
    schema_hash VARCHAR
);

CREATE TABLE IF NOT EXISTS cxone_sync.job_events (
    job_id VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    download_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    trigger VARCHAR,
    interval_start TIMESTAMPTZ,
    interval_end TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    error_details VARCHAR,
    seen_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS cxone_sync.schema_versions (
    category VARCHAR NOT NULL,
    data_type VARCHAR NOT NULL,
    schema_hash VARCHAR NOT NULL,
    columns JSON NOT NULL,
    first_partition VARCHAR NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL
);
