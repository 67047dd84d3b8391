-- Remove the table rows whose key has a strictly newer staged version (classified at staging).
DELETE FROM {target} AS t
USING _cxone_stage AS s
WHERE s."_cxone_action" = 1 AND {key_match};
