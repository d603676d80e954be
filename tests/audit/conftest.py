"""The store suite runs once per backend: chDB always, a ClickHouse server when one is named."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampline.audit import ChdbStore, ClickHouseStore, Store
from tests.helpers import drop_database

ENV_URL = "STAMPLINE_CLICKHOUSE_URL"


@pytest.fixture(params=["chdb", "clickhouse"])
def any_store(request: pytest.FixtureRequest, chdb_dir: Path, uid: str) -> Iterator[Store]:
    """A fresh store on each backend; the server one only when $STAMPLINE_CLICKHOUSE_URL is set."""
    if request.param == "chdb":
        with ChdbStore(chdb_dir, f"t_{uid}") as s:
            yield s
            drop_database(s)
        return
    url = os.environ.get(ENV_URL)
    if not url:
        pytest.skip(f"no ClickHouse server: set ${ENV_URL} to run the server backend")
    with ClickHouseStore(
        url,
        f"t_{uid}",
        user=os.environ.get("STAMPLINE_CLICKHOUSE_USER", "default"),
        password=os.environ.get("STAMPLINE_CLICKHOUSE_PASSWORD", ""),
    ) as s:
        yield s
        s._execute(f"DROP DATABASE IF EXISTS {s.database}")
