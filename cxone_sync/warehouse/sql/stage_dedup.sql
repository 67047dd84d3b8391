-- The narrow pass: read only the key columns and updated_at of every new file and keep, per
-- key, where its newest version lives (file index, row number in the file). Newest: updated_at
-- (null first, so it is caught), then the file's rank (the paths come in job end time, job id,
-- uri order, so file_index is the rank), then the row's place in its file. The wide columns are
-- read once, later, only for the rows that will be written.
SELECT {key_columns}, r."updated_at",
       r.file_index AS "_cxone_file_index",
       r.file_row_number AS "_cxone_file_row",
       f.job_id AS "_cxone_job_id",
       f.job_completed_at AS "_cxone_job_completed_at"
FROM read_parquet($paths, union_by_name = true) AS r
JOIN _cxone_files AS f ON r.file_index = f.file_index
QUALIFY row_number() OVER (
    PARTITION BY {key_columns}
    ORDER BY r."updated_at" DESC NULLS FIRST, r.file_index DESC, r.file_row_number DESC
) = 1
