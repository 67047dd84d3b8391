INSERT INTO cxone_sync.partition_loads
    (category, data_type, partition_key, window_start, window_end, loaded_at, files,
     files_skipped, rows_read, rows_inserted, rows_updated, rows_stale, schema_hash)
VALUES ($category, $data_type, $partition_key, $window_start, $window_end, $loaded_at, $files,
        $files_skipped, $rows_read, $rows_inserted, $rows_updated, $rows_stale, $schema_hash);
