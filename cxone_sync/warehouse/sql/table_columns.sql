SELECT column_name, data_type
FROM information_schema.columns
WHERE table_schema = 'cxone' AND table_name = $table
ORDER BY ordinal_position;
