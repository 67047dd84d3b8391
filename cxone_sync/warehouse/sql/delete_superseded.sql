-- Remove target rows whose key has a strictly newer staged version:
-- (updated_at, job end time, job id) compared lexicographically.
DELETE FROM {target} AS t
USING _cxone_stage AS s
WHERE {key_match}
  AND (s."updated_at" > t."updated_at"
       OR (s."updated_at" = t."updated_at"
           AND (s."_cxone_job_completed_at" > t."_cxone_job_completed_at"
                OR (s."_cxone_job_completed_at" = t."_cxone_job_completed_at"
                    AND s."_cxone_job_id" > t."_cxone_job_id"))));
