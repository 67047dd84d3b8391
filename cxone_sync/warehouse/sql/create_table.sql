-- The table's columns: the files' columns (unified by name), then the platform's metadata.
CREATE TABLE {target} AS
SELECT {file_columns},
       CAST(NULL AS VARCHAR) AS "_cxone_job_id",
       CAST(NULL AS TIMESTAMPTZ) AS "_cxone_job_completed_at",
       CAST(NULL AS VARCHAR) AS "_cxone_source_uri",
       CAST(NULL AS VARCHAR) AS "_cxone_partition",
       CAST(NULL AS TIMESTAMPTZ) AS "_cxone_loaded_at"
FROM read_parquet($paths, union_by_name = true) AS r
WITH NO DATA;
