CREATE TEMP TABLE _cxone_files (
    path VARCHAR, uri VARCHAR, job_id VARCHAR, job_completed_at TIMESTAMPTZ
);
