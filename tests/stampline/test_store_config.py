"""The store and clock sections of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampline.config import Config, ConfigError, load_config
from stampline.wiring import retention

BASE = """broker: {embedded: true}
topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq}
rules: {files: [r.yaml]}
"""


def _load(tmp_path: Path, extra: str) -> Config:
    path = tmp_path / "c.yaml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_server_backend_needs_a_url(tmp_path: Path) -> None:
    """backend clickhouse without url is refused, naming the store section."""
    with pytest.raises(ConfigError, match="backend clickhouse needs url") as exc:
        _load(tmp_path, "store: {backend: clickhouse}\n")
    assert exc.value.problems[0].key == "store"


def test_the_password_is_a_secret(tmp_path: Path) -> None:
    """The server password never appears when the configuration is printed."""
    cfg = _load(
        tmp_path,
        "store: {backend: clickhouse, url: 'https://ch:8443', password: hunter2, secure: true}\n",
    )
    assert "hunter2" not in repr(cfg)
    assert cfg.store.password.get_secret_value() == "hunter2"


def test_retention_defaults_and_overrides(tmp_path: Path) -> None:
    """Raw trail 30 days and rollups 400 days by default; durations override them."""
    assert retention(_load(tmp_path, "").store).raw_s == 30 * 86_400
    cfg = _load(tmp_path, "store: {retention: {raw: 7d, rollups: 90d}}\n")
    r = retention(cfg.store)
    assert (r.raw_s, r.rollups_s) == (7 * 86_400, 90 * 86_400)


def test_a_retention_under_an_hour_is_refused(tmp_path: Path) -> None:
    """A retention shorter than an hour is an error naming the key."""
    with pytest.raises(ConfigError, match="at least 1h") as exc:
        _load(tmp_path, "store: {retention: {raw: 10m}}\n")
    assert exc.value.problems[0].key == "store.retention.raw"


def test_clock_error_source_is_validated(tmp_path: Path) -> None:
    """clock_error_source accepts configured or chrony, nothing else."""
    assert (
        _load(tmp_path, "gate: {clock_error_source: chrony}\n").gate.clock_error_source == "chrony"
    )
    with pytest.raises(ConfigError, match="clock_error_source"):
        _load(tmp_path, "gate: {clock_error_source: ntp}\n")


def test_a_signing_key_inside_the_store_folder_is_refused(tmp_path: Path) -> None:
    """recorder.signing_key inside store.path is refused, naming the key."""
    with pytest.raises(ConfigError, match=r"recorder\.signing_key .* is inside store\.path"):
        _load(
            tmp_path, f"store: {{path: {tmp_path}/s}}\nrecorder: {{signing_key: {tmp_path}/s/k}}\n"
        )
    cfg = _load(
        tmp_path, f"store: {{path: {tmp_path}/s}}\nrecorder: {{signing_key: {tmp_path}/k}}\n"
    )
    assert cfg.recorder.signing_key == tmp_path / "k"
