-- The high watermark only moves forward; its partition key moves with it.
INSERT INTO cxone_sync.watermarks
    (category, data_type, high_watermark, last_partition_key, updated_at)
VALUES ($category, $data_type, $window_end, $partition_key, $loaded_at)
ON CONFLICT (category, data_type) DO UPDATE SET
    last_partition_key = CASE WHEN excluded.high_watermark > high_watermark
                              THEN excluded.last_partition_key ELSE last_partition_key END,
    high_watermark = greatest(high_watermark, excluded.high_watermark),
    updated_at = excluded.updated_at;
