SELECT uri, version_id, sha256
FROM cxone_sync.file_audit
WHERE list_contains($uris, uri)
ORDER BY loaded_at, uri;
