SELECT schema_hash, CAST(columns AS VARCHAR), first_partition, first_seen_at
FROM cxone_sync.schema_versions
WHERE category = $category AND data_type = $data_type
ORDER BY first_seen_at, schema_hash;
