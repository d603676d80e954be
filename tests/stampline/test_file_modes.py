"""The chDB store is private by default: its folder 0700, every file in it 0600; the
`store.permissions: umask` setting leaves modes to the process umask.

chDB serves one data directory per process, so each store here is opened by a child
process through the deployment's own wiring (configuration → open_store → trail rows).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stampline.conftest import MARKET_RULES, WriteConfig

_WRITE_TRAIL = """
import os, sys
os.umask(0o022)  # a typical login umask: without stampline's care, files would be 0644
from stampline.config import load_config
from stampline.wiring import open_store
from tests.audit.test_store_suite import pipeline
with open_store(load_config(sys.argv[1]).store) as store:
    store.write_observations(pipeline(50))
    store.write_observations(pipeline(50))
"""


def _write_trail(config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _WRITE_TRAIL, str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr


def _modes(root: Path) -> tuple[set[int], set[int]]:
    dirs, files = {stat.S_IMODE(root.stat().st_mode)}, set()
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        (dirs if path.is_dir() else files).add(mode)
    return dirs, files


def _config(store: Path, extra: str = "") -> str:
    return (
        "version: 1\nbroker: {embedded: true}\n"
        "topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq}\n"
        f"rules: {{files: [{MARKET_RULES}]}}\nstore: {{path: '{store}'{extra}}}\n"
    )


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_new_store_is_readable_by_its_owner_only(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """A store the gate's wiring creates is 0700 with every file 0600, under umask 022."""
    store = tmp_path / "deploy" / "trail"
    _write_trail(write_config(_config(store)))
    dirs, files = _modes(store)
    assert files, "the store wrote files"
    assert dirs == {0o700}
    assert files == {0o600}


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_permissions_umask_leaves_modes_to_the_umask(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """`store.permissions: umask` creates the folder and files as umask 022 says."""
    store = tmp_path / "shared" / "trail"
    _write_trail(write_config(_config(store, ", permissions: umask")))
    dirs, files = _modes(store)
    assert 0o755 in dirs
    assert 0o644 in files


def test_an_unknown_permissions_value_is_refused(write_config: WriteConfig) -> None:
    """`store.permissions` takes private or umask; anything else names the key."""
    from stampline.config import check_config

    _, problems = check_config(write_config(_config(Path("x"), ", permissions: world")))
    assert [p.key for p in problems] == ["store.permissions"]
