SELECT high_watermark, last_partition_key, updated_at
FROM cxone_sync.watermarks
WHERE category = $category AND data_type = $data_type;
