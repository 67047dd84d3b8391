SELECT partition_key, window_start, window_end, loaded_at, files, files_skipped,
       rows_read, rows_inserted, rows_updated, rows_stale
FROM cxone_sync.partition_loads
WHERE category = $category AND data_type = $data_type
ORDER BY loaded_at, partition_key;
