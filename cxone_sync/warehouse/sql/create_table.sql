CREATE TABLE {target} AS
SELECT s.*,
       CAST(NULL AS VARCHAR) AS "_cxone_partition",
       CAST(NULL AS TIMESTAMPTZ) AS "_cxone_loaded_at"
FROM _cxone_stage AS s
WITH NO DATA;
