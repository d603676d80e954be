"""The server backend: a ClickHouse server through clickhouse-connect (HTTP/HTTPS).

Same DDL and SQL as chDB; inserts stream the same Arrow table through ``input()``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa

from stampline.audit._schema import Retention
from stampline.audit._store import Store, arrow_structure, insert_settings
from stampline.audit.exceptions import StoreError


class ClickHouseStore(Store):
    """Audit store on a ClickHouse server. Opening it applies any pending migration.

    ``url`` is ``http(s)://host:port``; ``secure`` forces TLS whatever the scheme says.
    """

    backend = "clickhouse"

    def __init__(
        self,
        url: str,
        database: str = "stampline",
        *,
        user: str = "default",
        password: str = "",
        secure: bool = False,
        verify_tls: bool = True,
        retention: Retention | None = None,
        migrate: bool = True,
    ) -> None:
        from urllib.parse import urlsplit

        import clickhouse_connect  # imported late: only server deployments need it

        super().__init__(database, retention)
        parts = urlsplit(url if "://" in url else f"http://{url}")
        tls = secure or parts.scheme == "https"
        port = parts.port or (8443 if tls else 8123)
        self.url = f"{'https' if tls else 'http'}://{parts.hostname}:{port}"
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname,
                port=port,
                username=user,
                password=password,
                secure=tls,
                verify=verify_tls,
                # nanosecond times come back as numbers, never quoted
                settings={"output_format_json_quote_64bit_integers": 0},
            )
        except Exception as exc:
            raise StoreError(f"cannot connect to ClickHouse at {self.url}: {_reason(exc)}") from exc
        if migrate:
            self.migrate()

    def _execute(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, settings=dict(settings or {}))
        except Exception as exc:
            raise StoreError(f"ClickHouse query failed: {exc}\n  in: {sql[:300]}") from exc

    def _rows(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        try:
            raw = self._client.raw_query(sql, parameters=dict(params or {}), fmt="JSONEachRow")
        except Exception as exc:
            raise StoreError(f"ClickHouse query failed: {exc}\n  in: {sql[:300]}") from exc
        return [orjson.loads(line) for line in raw.splitlines() if line]

    def _arrow(self, sql: str, params: Mapping[str, Any] | None) -> pa.Table:
        try:
            table: pa.Table = self._client.query_arrow(sql, parameters=dict(params or {}))
        except Exception as exc:
            raise StoreError(f"ClickHouse query failed: {exc}\n  in: {sql[:300]}") from exc
        return table

    def _insert(
        self, table_name: str, columns: str, select: str, table: pa.Table, token: str | None
    ) -> None:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        sql = (
            f"INSERT INTO {self.database}.{table_name} ({columns}) SELECT {select} "
            f"FROM input('{arrow_structure(table)}') FORMAT ArrowStream"
        )
        settings = insert_settings(token)
        try:
            self._client.command(sql, data=sink.getvalue().to_pybytes(), settings=settings)
        except Exception as exc:
            raise StoreError(f"ClickHouse insert failed: {exc}\n  in: {sql[:300]}") from exc

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ClickHouseStore:
        return self


def _reason(exc: BaseException) -> str:
    """The cause in a connection error, without the driver's retry and URL details."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]
