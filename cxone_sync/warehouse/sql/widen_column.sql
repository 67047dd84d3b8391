ALTER TABLE {target} ALTER COLUMN {column} SET DATA TYPE {sql_type};
