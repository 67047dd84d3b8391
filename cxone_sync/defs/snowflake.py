"""The Snowflake side of the warehouse resource, imported only when ``CXONE_WAREHOUSE=snowflake``.

``dagster_snowflake`` pulls in snowflake.core and snowpark: loading the code location took 6.0 s
of CPU with it and 2.9 s without (measured on this project's 2-core machine), paid by every
Dagster run process and code server on the DuckDB path too if :mod:`cxone_sync.defs.resources`
imported it.
"""

from __future__ import annotations

import json
from typing import Any

from dagster_snowflake import SnowflakeResource

from cxone_sync.defs.resources import WarehouseResource, secret
from cxone_sync.settings import Settings
from cxone_sync.warehouse.base import Warehouse


class SnowflakeWarehouseResource(WarehouseResource):
    """:class:`WarehouseResource` reaching Snowflake through ``dagster_snowflake``; its password
    and key passphrase are ``dg.EnvVar`` values, never resolved into config."""

    snowflake: SnowflakeResource

    def _snowflake(self) -> Warehouse:
        from cxone_sync.warehouse.snowflake_warehouse import SnowflakeWarehouse

        if self.s3 is None:
            return super()._snowflake()
        return SnowflakeWarehouse(
            self.snowflake.get_connection,
            stage=self.snowflake_stage,
            stage_url=f"s3://{self.bucket}/",
            s3_client=self.s3.get_client(),
            instance_key=json.dumps(
                [
                    self.snowflake.account,
                    self.snowflake.additional_snowflake_connection_args,
                    self.snowflake.database,
                ],
                sort_keys=True,
                default=str,
            ),
        )


def snowflake_resource(settings: Settings) -> SnowflakeResource | None:
    """dagster-snowflake's resource from the SNOWFLAKE_* settings; secrets as EnvVar only."""
    if settings.snowflake_missing():
        return None
    extra: dict[str, Any] = {}
    if settings.snowflake_host:
        extra["host"] = settings.snowflake_host
    if settings.snowflake_port:
        extra["port"] = settings.snowflake_port
    if settings.snowflake_protocol:
        extra["protocol"] = settings.snowflake_protocol
    return SnowflakeResource(
        account=settings.snowflake_account,
        user=settings.snowflake_user or "",
        password=secret("SNOWFLAKE_PASSWORD", None),
        private_key_path=(
            str(settings.snowflake_private_key_path)
            if settings.snowflake_private_key_path
            else None
        ),
        private_key_password=secret("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", None),
        role=settings.snowflake_role,
        warehouse=settings.snowflake_warehouse,
        database=settings.snowflake_database,
        # every statement names its schema; a current schema is still needed by the emulator's
        # MERGE, and PUBLIC exists in every database
        schema="PUBLIC",
        timezone="UTC",
        additional_snowflake_connection_args=extra or None,
    )
