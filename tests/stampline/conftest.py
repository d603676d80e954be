"""Fixtures for the shell's tests: configuration files and a clean environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from stampline.config import ENV_PREFIX
from stampline.demo import rules_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "stampline.yaml"
MARKET_RULES = rules_file()

WriteConfig = Callable[..., Path]


@pytest.fixture(autouse=True)
def no_stampline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide every STAMPLINE_ variable from the test; monkeypatch restores them afterwards."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write a configuration file (folders created as needed) and return its path."""

    def write(text: str, name: str = "stampline.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        return path

    return write


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port the OS just handed out and nothing listens on any more."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
