CREATE TEMP TABLE _cxone_job_events (
    job_id VARCHAR, category VARCHAR, download_id VARCHAR, status VARCHAR, trigger VARCHAR,
    interval_start TIMESTAMPTZ, interval_end TIMESTAMPTZ, updated_at TIMESTAMPTZ,
    error_details VARCHAR
);
