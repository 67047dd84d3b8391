-- Read every new file once, tag each row with its file's job, keep the newest version per key:
-- updated_at, then the job's end time, then the job id (null updated_at first, so it is caught).
CREATE TEMP TABLE _cxone_stage AS
SELECT r.* EXCLUDE ({excluded}),
       f.job_id AS "_cxone_job_id",
       f.job_completed_at AS "_cxone_job_completed_at",
       f.uri AS "_cxone_source_uri"
FROM read_parquet($paths, union_by_name = true, filename = '_cxone_file',
                  file_row_number = true) AS r
JOIN _cxone_files AS f ON r."_cxone_file" = f.path
QUALIFY row_number() OVER (
    PARTITION BY {stage_key}
    ORDER BY r."updated_at" DESC NULLS FIRST, f.job_completed_at DESC, f.job_id DESC,
             f.uri DESC, r.file_row_number DESC
) = 1;
