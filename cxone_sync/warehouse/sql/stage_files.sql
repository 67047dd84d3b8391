CREATE TEMP TABLE _cxone_files (
    file_index BIGINT, path VARCHAR, uri VARCHAR, job_id VARCHAR, job_completed_at TIMESTAMPTZ
);
