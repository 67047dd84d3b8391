SELECT count(*), count(*) FILTER (WHERE {null_key})
FROM _cxone_stage AS s;
