"""``cxone-sync policy``: the IAM and bucket policy documents the export bucket needs.

:func:`render_policies` writes, for one bucket and customer-managed KMS key:

* ``export_role_trust``: the trust policy of the role CXone assumes to write exports (CXone's AWS
  account as principal, only with the agreed ``sts:ExternalId``);
* ``writer_grants``: that role's permissions: upload under the export prefix, encrypt with the key;
* ``reader_grants``: the platform's reader role: read objects (and their versions), list the
  bucket, decrypt with the key, and read the bucket settings ``cxone-sync doctor`` checks;
* ``bucket_policy``: deny plain HTTP, deny uploads without SSE-KMS, deny uploads with another key;
* ``kms_key_policy_statements`` (only when role ARNs are given): statements for the key policy
  that let those roles use the key, needed when the key policy does not delegate to IAM.

CXone's AWS account id and the external id come from the CXone Data Download S3 setup; this
module does not know them, so without them it renders visible placeholders and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from cxone_sync.preflight.iam import (
    SSE_HEADER,
    secure_transport_statement,
    unencrypted_upload_statement,
)

CXONE_ACCOUNT_PLACEHOLDER = "<CXONE-AWS-ACCOUNT-ID>"
EXTERNAL_ID_PLACEHOLDER = "<EXTERNAL-ID-FROM-CXONE>"
KMS_KEY_PLACEHOLDER = "<CUSTOMER-MANAGED-KMS-KEY-ARN>"
DEFAULT_PREFIX = "exports/"
VERSION = "2012-10-17"

WRITER_S3_ACTIONS = ["s3:PutObject", "s3:AbortMultipartUpload"]
WRITER_KMS_ACTIONS = ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]
READER_S3_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
READER_KMS_ACTIONS = ["kms:Decrypt", "kms:DescribeKey"]
PREFLIGHT_ACTIONS = [
    "s3:GetBucketVersioning",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketPolicy",
]

HEADINGS = {
    "export_role_trust": "Trust policy of the export role CXone assumes",
    "writer_grants": "Permissions of the export role (attach to it)",
    "reader_grants": "Permissions of the platform's reader role (attach to it)",
    "bucket_policy": "Bucket policy of the export bucket",
    "kms_key_policy_statements": "Statements to add to the KMS key policy",
}


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": list(statements)}


def render_policies(
    bucket: str,
    kms_key_arn: str,
    external_id: str,
    export_role_arn: str | None = None,
    reader_role_arn: str | None = None,
    cxone_account_id: str = CXONE_ACCOUNT_PLACEHOLDER,
    prefix: str = DEFAULT_PREFIX,
) -> dict[str, dict[str, Any]]:
    """The policy documents, keyed as in :data:`HEADINGS` (all plain JSON-serializable dicts)."""
    bucket_arn = f"arn:aws:s3:::{bucket}"
    objects = f"{bucket_arn}/{prefix}*"
    documents: dict[str, dict[str, Any]] = {
        "export_role_trust": _document(
            {
                "Sid": "CXoneAssumesExportRole",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{cxone_account_id}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ),
        "writer_grants": _document(
            {
                "Sid": "WriteExportFiles",
                "Effect": "Allow",
                "Action": WRITER_S3_ACTIONS,
                "Resource": objects,
            },
            {
                "Sid": "ListExportPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            },
            {
                # kms:Decrypt: S3 needs it to assemble SSE-KMS multipart uploads (large files);
                # the role has no s3:GetObject, so it still cannot read exports back.
                "Sid": "EncryptWithExportKey",
                "Effect": "Allow",
                "Action": WRITER_KMS_ACTIONS,
                "Resource": kms_key_arn,
            },
        ),
        "reader_grants": _document(
            {
                "Sid": "ReadExportFiles",
                "Effect": "Allow",
                "Action": READER_S3_ACTIONS,
                "Resource": objects,
            },
            {
                "Sid": "ListExportPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            },
            {
                "Sid": "DecryptWithExportKey",
                "Effect": "Allow",
                "Action": READER_KMS_ACTIONS,
                "Resource": kms_key_arn,
            },
            {
                "Sid": "PreflightReadsBucketSettings",
                "Effect": "Allow",
                "Action": PREFLIGHT_ACTIONS,
                "Resource": bucket_arn,
            },
        ),
        "bucket_policy": _document(
            secure_transport_statement(bucket),
            unencrypted_upload_statement(bucket),
            {
                "Sid": "DenyUploadsWithOtherKmsKey",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {
                    "StringNotEqualsIfExists": {
                        f"{SSE_HEADER}-aws-kms-key-id": kms_key_arn,
                    }
                },
            },
        ),
    }
    key_statements = []
    if export_role_arn:
        key_statements.append(
            {
                "Sid": "ExportRoleEncrypts",
                "Effect": "Allow",
                "Principal": {"AWS": export_role_arn},
                "Action": WRITER_KMS_ACTIONS,
                "Resource": "*",
            }
        )
    if reader_role_arn:
        key_statements.append(
            {
                "Sid": "ReaderRoleDecrypts",
                "Effect": "Allow",
                "Principal": {"AWS": reader_role_arn},
                "Action": READER_KMS_ACTIONS,
                "Resource": "*",
            }
        )
    if key_statements:
        documents["kms_key_policy_statements"] = _document(*key_statements)
    return documents


def _bucket_key_arn(bucket: str) -> str | None:
    """The customer-managed key of the bucket's default encryption, when S3 tells us."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cxone_sync.preflight.clients import aws_clients
    from cxone_sync.settings import get_settings

    try:
        s3, _ = aws_clients(get_settings())
        config = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    except (BotoCoreError, ClientError, ValueError):
        return None
    rules = config.get("Rules") or [{}]
    key = rules[0].get("ApplyServerSideEncryptionByDefault", {}).get("KMSMasterKeyID")
    return key if isinstance(key, str) and key.startswith("arn:") else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxone-sync policy",
        description="Print the IAM and bucket policies of the CXone export bucket as JSON.",
    )
    parser.add_argument("--bucket", help="default: CXONE_BUCKET")
    parser.add_argument("--kms-key-arn", help="default: the key of the bucket's default encryption")
    parser.add_argument("--external-id", help="default: CXONE_EXTERNAL_ID")
    parser.add_argument("--cxone-account-id", help="default: CXONE_AWS_ACCOUNT_ID")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="export key prefix")
    parser.add_argument("--export-role-arn")
    parser.add_argument("--reader-role-arn")
    return parser


def snowflake_trust_policy(iam_user_arn: str, external_id: str) -> dict[str, Any]:
    """The trust policy of the role the Snowflake storage integration assumes to read the bucket:
    only Snowflake's IAM user for this integration, only with the integration's external id."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SnowflakeStorageIntegration",
                "Effect": "Allow",
                "Principal": {"AWS": iam_user_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


def _print_snowflake(reader_role_arn: str | None) -> None:
    from cxone_sync.settings import get_settings
    from cxone_sync.warehouse.snowflake_doctor import grant_statements

    settings = get_settings()
    iam_user = settings.snowflake_iam_user_arn or "<STORAGE_AWS_IAM_USER_ARN>"
    external_id = settings.snowflake_external_id or "<STORAGE_AWS_EXTERNAL_ID>"
    role = reader_role_arn or "the reader role"
    print(
        f"# Snowflake storage integration: trust policy of {role}, values from DESC "
        "INTEGRATION (snowflake_trust)"
    )
    print(json.dumps(snowflake_trust_policy(iam_user, external_id), indent=2))
    print()
    print("# Snowflake grants for the loading role (snowflake_grants)")
    for statement in grant_statements(settings):
        print(statement)
    print()


def policy_main(argv: Sequence[str] | None = None) -> int:
    """``cxone-sync policy``: print each document under a ``# heading`` line; 0 on success."""
    from cxone_sync.settings import get_settings

    args = _parser().parse_args(argv)
    settings = get_settings()
    bucket = args.bucket or settings.cxone_bucket
    kms_key_arn = args.kms_key_arn or _bucket_key_arn(bucket)
    external_id = args.external_id or settings.cxone_external_id
    account = args.cxone_account_id or settings.cxone_aws_account_id
    unknown = []
    if not kms_key_arn:
        unknown.append("the KMS key ARN (--kms-key-arn)")
    if not external_id:
        unknown.append("the external id (--external-id or CXONE_EXTERNAL_ID)")
    if not account:
        unknown.append("CXone's AWS account id (--cxone-account-id or CXONE_AWS_ACCOUNT_ID)")
    documents = render_policies(
        bucket,
        kms_key_arn or KMS_KEY_PLACEHOLDER,
        external_id or EXTERNAL_ID_PLACEHOLDER,
        export_role_arn=args.export_role_arn,
        reader_role_arn=args.reader_role_arn,
        cxone_account_id=account or CXONE_ACCOUNT_PLACEHOLDER,
        prefix=args.prefix,
    )
    for name, document in documents.items():
        print(f"# {HEADINGS[name]} ({name})")
        print(json.dumps(document, indent=2))
        print()
    if settings.cxone_warehouse == "snowflake":
        _print_snowflake(args.reader_role_arn)
    if unknown:
        print(
            "policy: placeholders left for " + "; ".join(unknown) + ": replace them before "
            "applying (CXone's Data Download S3 setup gives the account id and external id)",
            file=sys.stderr,
        )
    return 0
