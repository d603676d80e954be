"""Shared helpers for the rules tests: rule files written on the fly, events as bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

T0_MS = 1_700_000_000_000
T0_NS = T0_MS * 1_000_000


def event(**fields: Any) -> dict[str, Any]:
    """A good market-data quote; keyword arguments override (Ellipsis removes a field)."""
    base: dict[str, Any] = {
        "provider": "xnas",
        "instrument": "AAPL",
        "seq": 1,
        "ts": T0_MS,
        "type": "quote",
        "price": 190.25,
        "quantity": 100,
        "bid": 190.24,
        "ask": 190.26,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def raw(**fields: Any) -> bytes:
    return orjson.dumps(event(**fields))


@pytest.fixture
def rule_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a version-2 rule file holding ``rules`` (YAML text) and return its path."""

    def write(rules: str, name: str = "r.rules.yaml", head: str = "") -> Path:
        path = tmp_path / name
        path.write_text(f"version: 2\n{head}rules:\n{rules}", "utf-8")
        return path

    return write
