INSERT INTO _cxone_files VALUES (?, ?, ?, ?);
