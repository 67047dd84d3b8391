-- After the delete, a staged row is inserted exactly when its key is absent from the target.
INSERT INTO {target} BY NAME
SELECT s.*, $partition_key AS "_cxone_partition", $loaded_at AS "_cxone_loaded_at"
FROM _cxone_stage AS s
WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_match});
