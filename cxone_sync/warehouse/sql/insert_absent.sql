-- The wide pass: read the files again and write the rows classified insert or update; after the
-- delete their keys are absent from the table. Rows are picked by (file index, row number).
INSERT INTO {target} BY NAME
SELECT {file_columns},
       f.job_id AS "_cxone_job_id",
       f.job_completed_at AS "_cxone_job_completed_at",
       f.uri AS "_cxone_source_uri",
       $partition_key AS "_cxone_partition",
       $loaded_at AS "_cxone_loaded_at"
FROM read_parquet($paths, union_by_name = true) AS r
JOIN _cxone_stage AS s
  ON r.file_index = s."_cxone_file_index" AND r.file_row_number = s."_cxone_file_row"
JOIN _cxone_files AS f ON r.file_index = f.file_index
WHERE s."_cxone_action" < 2;
