INSERT INTO cxone_sync.file_audit
    (uri, version_id, sha256, rows, size_bytes, job_id, job_completed_at,
     category, data_type, partition_key, loaded_at)
VALUES ($uri, $version_id, $sha256, $rows, $size_bytes, $job_id, $job_completed_at,
        $category, $data_type, $partition_key, $loaded_at);
