-- The newest version per key, classified against the table in one join:
-- _cxone_action 0 = key absent (insert), 1 = strictly newer than the table's version (update),
-- 2 = not newer (stale); _cxone_cross = the key is in the table under another partition.
-- Newer compares (updated_at, job end time, job id) lexicographically.
CREATE TEMP TABLE _cxone_stage AS
WITH d AS ({dedup})
SELECT d.*,
       CAST(CASE
           WHEN t.{probe} IS NULL THEN 0
           WHEN d."updated_at" > t."updated_at"
                OR (d."updated_at" = t."updated_at"
                    AND (d."_cxone_job_completed_at" > t."_cxone_job_completed_at"
                         OR (d."_cxone_job_completed_at" = t."_cxone_job_completed_at"
                             AND d."_cxone_job_id" > t."_cxone_job_id"))) THEN 1
           ELSE 2
       END AS UTINYINT) AS "_cxone_action",
       (t.{probe} IS NOT NULL
        AND t."_cxone_partition" IS DISTINCT FROM $partition_key) AS "_cxone_cross"
FROM d
LEFT JOIN {target} AS t ON {key_match};
