ALTER TABLE {target} ADD COLUMN {column} {sql_type};
