-- Every count of the merge in one pass over the classified stage.
SELECT count(*),
       count(*) FILTER (WHERE {null_key}),
       count(*) FILTER (WHERE s."_cxone_action" = 0),
       count(*) FILTER (WHERE s."_cxone_action" = 1),
       count(*) FILTER (WHERE s."_cxone_action" = 2),
       count(*) FILTER (WHERE s."_cxone_cross")
FROM _cxone_stage AS s;
