"""The Snowflake adapter's SQL text and configuration, without a warehouse."""

from __future__ import annotations

import dagster as dg
import pytest

from cxone_sync.defs.resources import build_resources
from cxone_sync.settings import Settings
from cxone_sync.warehouse.base import DataError
from cxone_sync.warehouse.snowflake_warehouse import SnowflakeWarehouse, quote, string_literal


def test_identifiers_and_stage_file_names_are_quoted_never_spliced() -> None:
    assert quote('a"b; DROP') == '"a""b; DROP"'
    assert string_literal("exports/x'y\\z.parquet") == "'exports/x\\'y\\\\z.parquet'"
    with pytest.raises(DataError, match="control character"):
        string_literal("exports/a\nb.parquet")


def test_a_stage_name_that_is_not_a_plain_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="SNOWFLAKE_STAGE"):
        SnowflakeWarehouse(
            lambda: None,  # type: ignore[arg-type,return-value]
            stage="x; DROP TABLE y",
            stage_url="s3://b/",
            s3_client=None,
        )


def test_snowflake_secrets_reach_dagster_as_env_vars_only(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CXONE_WAREHOUSE": "snowflake",
        "SNOWFLAKE_ACCOUNT": "acme-xy12345",
        "SNOWFLAKE_USER": "loader",
        "SNOWFLAKE_PASSWORD": "s3cret-value",
        "SNOWFLAKE_DATABASE": "BI",
        "SNOWFLAKE_HOST": "acme.privatelink.snowflakecomputing.com",
        "SNOWFLAKE_PORT": "443",
        "SNOWFLAKE_PROTOCOL": "https",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.warehouse_pool_limit == 8
    warehouse = build_resources(settings)["warehouse"]
    snowflake = warehouse.snowflake
    assert snowflake is not None
    assert isinstance(snowflake.password, dg.EnvVar)
    assert snowflake.password == "SNOWFLAKE_PASSWORD"  # the variable's name, not its value
    assert "s3cret-value" not in repr(warehouse)
    assert snowflake.additional_snowflake_connection_args == {
        "host": "acme.privatelink.snowflakecomputing.com",
        "port": 443,
        "protocol": "https",
    }
    monkeypatch.setenv("CXONE_WAREHOUSE_POOL_LIMIT", "3")
    assert Settings().warehouse_pool_limit == 3
    monkeypatch.setenv("CXONE_WAREHOUSE", "duckdb")
    monkeypatch.delenv("CXONE_WAREHOUSE_POOL_LIMIT")
    assert Settings().warehouse_pool_limit == 1
