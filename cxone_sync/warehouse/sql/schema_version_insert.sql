INSERT INTO cxone_sync.schema_versions
    (category, data_type, schema_hash, columns, first_partition, first_seen_at)
SELECT $category, $data_type, $schema_hash, $columns, $partition_key, $seen_at
WHERE NOT EXISTS (
    SELECT 1 FROM cxone_sync.schema_versions
    WHERE category = $category AND data_type = $data_type AND schema_hash = $schema_hash
);
