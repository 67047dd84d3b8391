-- Idempotent on (job_id, status, updated_at): a state seen before adds nothing.
INSERT INTO cxone_sync.job_events
    (job_id, category, download_id, status, trigger, interval_start, interval_end,
     updated_at, error_details, seen_at)
SELECT DISTINCT ON (e.job_id, e.status, e.updated_at)
       e.job_id, e.category, e.download_id, e.status, e.trigger, e.interval_start,
       e.interval_end, e.updated_at, e.error_details, $seen_at
FROM _cxone_job_events AS e
WHERE NOT EXISTS (
    SELECT 1 FROM cxone_sync.job_events AS j
    WHERE j.job_id = e.job_id AND j.status = e.status AND j.updated_at = e.updated_at
);
