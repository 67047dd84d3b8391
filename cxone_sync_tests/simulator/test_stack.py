"""The local stack: environment, reader access, denied reads, the CLI commands."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from cxone_sync.settings import SIM_AWS_KEY, SIM_AWS_REGION, get_settings
from cxone_sync.simulator import __main__ as sim_cli
from cxone_sync.simulator.config import SimConfig
from cxone_sync.simulator.stack import LocalStack, config_from_args, history_start
from cxone_sync.simulator.stack import _parser as stack_parser
from cxone_sync_tests.fixtures import MakeStack, build_config
from cxone_sync_tests.simulator.test_server import JOBS, client

START = datetime(2024, 3, 15, tzinfo=UTC)


def test_environment_points_at_the_stack(stack: LocalStack) -> None:
    assert stack.environment() == {
        "CXONE_API_URL": stack.api_url,
        "CXONE_CLIENT_ID": stack.config.client_id,
        "CXONE_CLIENT_SECRET": stack.config.client_secret,
        "CXONE_BUCKET": stack.config.bucket,
        "AWS_ENDPOINT_URL_S3": stack.s3_url,
        "AWS_ENDPOINT_URL_KMS": stack.s3_url,
        "AWS_REGION": SIM_AWS_REGION,
        "AWS_ACCESS_KEY_ID": SIM_AWS_KEY,
        "AWS_SECRET_ACCESS_KEY": SIM_AWS_KEY,
    }
    assert stack.api_url.startswith("http://127.0.0.1:")
    assert stack.s3_url.startswith("http://127.0.0.1:")


def test_stack_env_configures_the_platform(stack_env: LocalStack, tmp_path: object) -> None:
    settings = get_settings()
    assert settings.cxone_api_url == stack_env.api_url
    assert settings.s3_endpoint_url == stack_env.s3_url
    assert settings.cxone_bucket == stack_env.config.bucket
    assert settings.cxone_client_secret.get_secret_value() == stack_env.config.client_secret
    assert str(settings.cxone_data_dir) == str(tmp_path)


def test_bucket_is_secure_and_reader_reads_completed_files(stack: LocalStack) -> None:
    s3 = stack.s3_client()
    bucket = stack.config.bucket
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == stack.kms_key_arn

    stack.world.advance(timedelta(hours=2))
    with client(stack) as api:
        job = api.get(JOBS, params={"status": "COMPLETED"}).json()["jobs"][0]
    uri = job["output_files"][0]
    key = uri.removeprefix(f"s3://{bucket}/")
    obj = s3.get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read(4) == b"PAR1"
    assert obj["SSEKMSKeyId"] == stack.kms_key_arn


def test_denied_read_of_a_rotated_key_interval(make_stack: MakeStack) -> None:
    stack = make_stack(denied_read=(START + timedelta(hours=1),))
    stack.world.advance(timedelta(hours=4))
    unreadable = stack.world.unreadable_keys()
    assert unreadable
    bucket, key = sorted(unreadable)[0]
    s3 = stack.s3_client()
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=bucket, Key=key)
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert "kms:Decrypt" in error["Message"]
    assert stack.kms_key_arn in error["Message"]
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


def test_make_stack_overrides() -> None:
    config = build_config(seed=3, api_429_rate=0.5, bucket="cxone-other")
    assert (config.seed, config.bucket, config.faults.api_429_rate) == (3, "cxone-other", 0.5)
    assert build_config() == SimConfig()
    with pytest.raises(TypeError):
        build_config(no_such_knob=1)


def test_stack_stops_cleanly_and_frees_its_bucket_name() -> None:
    with LocalStack() as first:
        url = first.api_url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/sim/clock")
    with LocalStack() as second:  # same default bucket name: free again
        assert second.s3_client().list_objects_v2(Bucket=second.config.bucket)["KeyCount"] == 0


def test_advance_cli(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["advance", "--hours", "2", "--api-url", stack.api_url]) == 0
    assert stack.world.now == stack.config.start + timedelta(hours=2)
    to = "2024-03-15T05:00:00Z"
    assert sim_cli.advance_main(["--to", to, "--api-url", stack.api_url]) == 0
    assert stack.world.now == START + timedelta(hours=5)
    assert "2024-03-15T05:00:00Z" in capsys.readouterr().out

    assert sim_cli.advance_main(["--to", "2024-03-15T01:00:00Z", "--api-url", stack.api_url]) == 1
    assert sim_cli.advance_main(["--hours", "1", "--api-url", "http://127.0.0.1:9"]) == 1
    assert sim_cli.main([]) == 2
    assert sim_cli.main(["teleport"]) == 2


def test_local_stack_command_serves_until_sigint() -> None:
    command = [
        sys.executable,
        "-m",
        "cxone_sync.simulator",
        "local-stack",
        "--api-port",
        "0",
        "--s3-port",
        "0",
        "--fixed-clock",
        "--advance-hours",
        "3",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        environment: dict[str, str] = {}
        while len(environment) < 8:
            line = process.stdout.readline()
            assert line, (
                f"local-stack ended early: {process.stderr.read() if process.stderr else ''}"
            )
            name, _, value = line.removeprefix("export ").strip().partition("=")
            environment[name] = shlex.split(value)[0]

        api_url = environment["CXONE_API_URL"]
        token = httpx.post(
            f"{api_url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": environment["CXONE_CLIENT_ID"],
                "client_secret": environment["CXONE_CLIENT_SECRET"],
            },
        ).json()["access_token"]
        jobs = httpx.get(
            f"{api_url}/api/v2/data-downloads/dl-telephony-prod/jobs",
            headers={"Authorization": f"Bearer {token}"},
        ).json()["jobs"]
        assert jobs, "the clock was advanced three hours"
        assert httpx.get(f"{api_url}/sim/clock").json()["now"] == "2024-03-15T03:00:00Z"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_live_config_starts_at_midnight_history_days_ago() -> None:
    now = datetime(2026, 12, 1, 15, 7, 30, tzinfo=UTC)
    assert history_start(now, 3) == datetime(2026, 11, 28, tzinfo=UTC)
    live = config_from_args(stack_parser().parse_args(["--history-days", "2"]), now=now)
    assert live.start == datetime(2026, 11, 29, tzinfo=UTC)
    fixed = config_from_args(stack_parser().parse_args(["--fixed-clock"]), now=now)
    assert fixed.start == START  # tests and the demo keep their deterministic clock
    with pytest.raises(ValueError, match="history-days"):
        history_start(now, -1)


def test_follow_wall_clock_moves_the_world_by_the_elapsed_wall_time(
    make_stack: MakeStack,
) -> None:
    stack = make_stack(scale=0.05)
    stack.world.advance(timedelta(hours=2))  # a lead given by `sim advance` is kept
    readings = iter([1000.0, *(1000.0 + 600.0 * k for k in range(1, 10_000))])
    stack.follow_wall_clock(tick_seconds=0.01, wall=lambda: next(readings))
    deadline = time.monotonic() + 30
    while stack.world.now < START + timedelta(hours=3) and time.monotonic() < deadline:
        time.sleep(0.02)
    stack.stop()  # stops the clock thread first
    moved = stack.world.now - (START + timedelta(hours=2))
    # ten-minute steps of the fake wall clock, never backwards, and jobs ran meanwhile
    assert moved >= timedelta(hours=1) and moved % timedelta(minutes=10) == timedelta(0)
    assert any(j["status"] == "COMPLETED" for j in stack.world.list_jobs("dl-telephony-prod"))


def test_live_local_stack_command_follows_the_wall_clock(tmp_path: Path) -> None:
    env_file = tmp_path / "local-stack.env"
    command = [
        sys.executable,
        "-m",
        "cxone_sync.simulator",
        "local-stack",
        *("--api-port", "0", "--s3-port", "0", "--scale", "0.02"),
        *("--history-days", "0", "--tick-seconds", "0.2", "--env-file", str(env_file)),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        environment: dict[str, str] = {}
        while "CXONE_PARTITIONS_START" not in environment:
            line = process.stdout.readline()
            assert line, (
                f"local-stack ended early: {process.stderr.read() if process.stderr else ''}"
            )
            name, _, value = line.removeprefix("export ").strip().partition("=")
            environment[name] = shlex.split(value)[0]
        today = datetime.now(UTC).date()
        # partitions start where the simulator's history starts: no years of empty partitions
        assert environment["CXONE_PARTITIONS_START"] == today.isoformat()
        assert env_file.read_text().count("export ") == len(environment)
        assert env_file.stat().st_mode & 0o777 == 0o600

        api_url = environment["CXONE_API_URL"]
        first = datetime.fromisoformat(httpx.get(f"{api_url}/sim/clock").json()["now"])
        assert abs(first - datetime.now(UTC)) < timedelta(minutes=5)
        deadline = time.monotonic() + 20
        later = first
        while later == first and time.monotonic() < deadline:
            time.sleep(0.2)
            later = datetime.fromisoformat(httpx.get(f"{api_url}/sim/clock").json()["now"])
        assert later > first, "the clock did not follow the wall clock"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert not env_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
