-- The table does not exist yet: every deduplicated row is an insert.
CREATE TEMP TABLE _cxone_stage AS
WITH d AS ({dedup})
SELECT d.*, CAST(0 AS UTINYINT) AS "_cxone_action", false AS "_cxone_cross"
FROM d;
