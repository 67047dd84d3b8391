"""``cxone-sync doctor``: preflight the API, the export bucket, read access and the warehouse.

Every check is a plain function returning a :class:`CheckLine`: whether it passed, what was found,
and on failure the exact remedy (an ``aws`` command or the policy statement to add). The bucket
checks take boto3 clients, so the Dagster asset checks (``cxone_sync.defs.storage``) and the
command line run the same code. Nothing here prints or returns a secret: API failures are reported
through :class:`CXoneClient`'s redacted messages, AWS failures by error code and message only.

Modules: :mod:`.common` (the check names and :class:`CheckLine`), :mod:`.bucket` (the bucket's
settings), :mod:`.iam` (policy statements and their evaluator), :mod:`.read` (read / decrypt),
:mod:`.api`, :mod:`.warehouse`, :mod:`.clients` (boto3 clients) and :mod:`.doctor` (all of them,
for the command line).
"""
