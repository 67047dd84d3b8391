SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata($paths);
