"""The local S3 endpoint: a secure export bucket, isolation, and KMS-denied reads."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from cxone_sync.simulator.s3 import S3Endpoint, create_export_bucket, make_client
from cxone_sync_tests.fixtures import ExportBucket


def test_export_bucket_settings_read_back(export_bucket: ExportBucket) -> None:
    s3 = export_bucket.endpoint.client()
    name, key_arn = export_bucket.name, export_bucket.kms_key_arn

    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"

    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules == [
        {
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": key_arn,
            },
            "BucketKeyEnabled": True,
        }
    ]

    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }

    statements = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])["Statement"]
    tls = next(s for s in statements if s["Sid"] == "DenyInsecureTransport")
    assert tls["Effect"] == "Deny"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    sse = next(s for s in statements if s["Sid"] == "DenyUnencryptedUploads")
    assert (sse["Effect"], sse["Action"]) == ("Deny", "s3:PutObject")
    assert sse["Condition"] == {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}}


def test_kms_key_is_customer_managed(export_bucket: ExportBucket) -> None:
    kms = export_bucket.endpoint.client("kms")
    meta = kms.describe_key(KeyId=export_bucket.kms_key_arn)["KeyMetadata"]
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"


def test_objects_are_versioned_and_kms_encrypted(export_bucket: ExportBucket) -> None:
    s3 = export_bucket.endpoint.client()
    first = s3.put_object(Bucket=export_bucket.name, Key="a/part-00000.parquet", Body=b"v1")
    second = s3.put_object(Bucket=export_bucket.name, Key="a/part-00000.parquet", Body=b"v2")
    assert first["VersionId"] != second["VersionId"]

    head = s3.head_object(Bucket=export_bucket.name, Key="a/part-00000.parquet")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == export_bucket.kms_key_arn
    old = s3.get_object(
        Bucket=export_bucket.name, Key="a/part-00000.parquet", VersionId=first["VersionId"]
    )
    assert old["Body"].read() == b"v1"


def test_policy_can_be_replaced_and_deleted(export_bucket: ExportBucket) -> None:
    s3 = export_bucket.endpoint.client()
    s3.delete_bucket_policy(Bucket=export_bucket.name)
    with pytest.raises(ClientError) as missing:
        s3.get_bucket_policy(Bucket=export_bucket.name)
    assert missing.value.response["Error"]["Code"] == "NoSuchBucketPolicy"

    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    s3.put_bucket_policy(Bucket=export_bucket.name, Policy=policy)
    assert s3.get_bucket_policy(Bucket=export_bucket.name)["Policy"] == policy


def test_denied_read_answers_403_naming_the_kms_key() -> None:
    def deny(bucket: str, key: str) -> bool:
        return key.startswith("rotated/")

    with S3Endpoint(deny=deny) as endpoint:
        key_arn = create_export_bucket(endpoint.url, "cxone-denied")
        s3 = endpoint.client()
        s3.put_object(Bucket="cxone-denied", Key="rotated/part-00000.parquet", Body=b"x")
        s3.put_object(Bucket="cxone-denied", Key="fine/part-00000.parquet", Body=b"y")

        with pytest.raises(ClientError) as denied:
            s3.get_object(Bucket="cxone-denied", Key="rotated/part-00000.parquet")
        error = denied.value.response["Error"]
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert error["Code"] == "AccessDenied"
        assert "kms:Decrypt" in error["Message"]
        assert key_arn in error["Message"]

        # Reading a byte range is a GetObject too.
        with pytest.raises(ClientError):
            s3.get_object(
                Bucket="cxone-denied", Key="rotated/part-00000.parquet", Range="bytes=0-0"
            )

        # Metadata, listings, tags and writes still work; other keys read normally.
        head = s3.head_object(Bucket="cxone-denied", Key="rotated/part-00000.parquet")
        assert head["ContentLength"] == 1
        listed = s3.list_objects_v2(Bucket="cxone-denied", Prefix="rotated/")["Contents"]
        assert [o["Key"] for o in listed] == ["rotated/part-00000.parquet"]
        tags = s3.get_object_tagging(Bucket="cxone-denied", Key="rotated/part-00000.parquet")
        assert tags["TagSet"] == []
        s3.put_object(Bucket="cxone-denied", Key="rotated/part-00000.parquet", Body=b"z")
        body = s3.get_object(Bucket="cxone-denied", Key="fine/part-00000.parquet")["Body"]
        assert body.read() == b"y"

        # The exporter keeps its grant.
        writer = endpoint.writer_client()
        body = writer.get_object(Bucket="cxone-denied", Key="rotated/part-00000.parquet")["Body"]
        assert body.read() == b"z"


def test_denied_rule_for_a_missing_key_still_answers_no_such_key() -> None:
    with S3Endpoint(deny=lambda bucket, key: True) as endpoint:
        create_export_bucket(endpoint.url, "cxone-missing")
        with pytest.raises(ClientError) as missing:
            endpoint.client().get_object(Bucket="cxone-missing", Key="nothing.parquet")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_endpoints_are_isolated_and_forget_their_state_when_stopped() -> None:
    name = f"cxone-iso-{uuid.uuid4().hex[:8]}"
    with S3Endpoint() as first, S3Endpoint() as second:
        create_export_bucket(first.url, name)
        first.client().put_object(Bucket=name, Key="k", Body=b"1")
        assert name not in [b["Name"] for b in second.client().list_buckets()["Buckets"]]
    with S3Endpoint() as third:
        # The name is free again and the new bucket starts empty.
        create_export_bucket(third.url, name)
        assert third.client().list_objects_v2(Bucket=name)["KeyCount"] == 0


def test_port_zero_picks_a_free_loopback_port() -> None:
    with S3Endpoint(port=0) as endpoint:
        assert endpoint.url == f"http://127.0.0.1:{endpoint.port}"
        assert endpoint.port > 0
        make_client(endpoint.url).list_buckets()


def test_non_default_region_bucket() -> None:
    with S3Endpoint() as endpoint:
        key_arn = create_export_bucket(endpoint.url, "cxone-eu", region="eu-west-1")
        assert ":eu-west-1:" in key_arn
        s3 = make_client(endpoint.url, region="eu-west-1")
        assert s3.get_bucket_location(Bucket="cxone-eu")["LocationConstraint"] == "eu-west-1"
