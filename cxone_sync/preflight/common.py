"""What every preflight check shares: the check names, the :class:`CheckLine` result, and AWS
failures (no bucket, denied, unreachable) as lines with their remedy."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

CHECK_API = "cxone_api"
CHECK_VERSIONING = "bucket_versioning"
CHECK_ENCRYPTION = "bucket_default_encryption"
CHECK_PUBLIC_ACCESS = "bucket_public_access_block"
CHECK_POLICY = "bucket_policy"
CHECK_READ = "read_decrypt"
CHECK_WAREHOUSE = "warehouse"


@dataclass(frozen=True)
class CheckLine:
    """One preflight result: ``fix`` is the exact remedy when ``ok`` is false, else None."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def render(self) -> list[str]:
        lines = [f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"]
        if self.fix:
            fix_lines = self.fix.splitlines()
            lines.append(f"    fix: {fix_lines[0]}")
            lines.extend(f"         {line}" for line in fix_lines[1:])
        return lines


def check_passed(name: str, detail: str) -> CheckLine:
    return CheckLine(name, True, detail, None)


def check_failed(name: str, detail: str, fix: str) -> CheckLine:
    return CheckLine(name, False, detail, fix)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())


def aws_failure(name: str, bucket: str, action: str, exc: Exception) -> CheckLine:
    """A check that could not read the setting at all: no bucket, no permission, no endpoint."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in {"NoSuchBucket", "404"}:
            return check_failed(
                name,
                f"bucket {bucket} does not exist (or is in another account/endpoint)",
                "create the export bucket (or set CXONE_BUCKET / AWS_ENDPOINT_URL_S3 to the "
                "right one), then re-run `cxone-sync doctor`",
            )
        if code in {"AccessDenied", "AccessDeniedException", "403", "AllAccessDisabled"}:
            return check_failed(
                name,
                f"{action} on {bucket} was denied: {error_message(exc) or code}",
                f"allow {action} on arn:aws:s3:::{bucket} for the role running the preflight "
                "(the reader role from `cxone-sync policy` includes it)",
            )
        return check_failed(
            name,
            f"{action} on {bucket} failed: {code} {error_message(exc)}".strip(),
            "check AWS_ENDPOINT_URL_S3, AWS_REGION and the AWS credentials, then re-run",
        )
    return check_failed(
        name,
        f"{action} on {bucket} failed: {type(exc).__name__}: {exc}",
        "check AWS_ENDPOINT_URL_S3, AWS_REGION and the AWS credentials, then re-run",
    )
