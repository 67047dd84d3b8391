"""A seekable read-only file over S3 ranged GETs, so pyarrow can read a Parquet footer only."""

from __future__ import annotations

import io
from typing import Any


class S3RangedFile(io.RawIOBase):
    def __init__(self, s3_client: Any, bucket: str, key: str, version_id: str | None = None):
        self._s3 = s3_client
        self._params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            self._params["VersionId"] = version_id
        head = s3_client.head_object(**self._params)
        self._size = int(head["ContentLength"])
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        end = self._pos + want - 1
        body = self._s3.get_object(Range=f"bytes={self._pos}-{end}", **self._params)["Body"]
        data = body.read()
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)
