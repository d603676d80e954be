"""A long-running stampline process gives Arrow the C library's allocator (pyarrow's bundled
mimalloc re-faulted fresh pages for every trail message), unless the user chose a pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stampline.yaml"
BACKEND = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def _backend(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    run = subprocess.run(
        [sys.executable, "-c", f"{code}; {BACKEND}"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return run.stdout.strip().splitlines()[-1]


def test_pyarrow_alone_defaults_to_another_pool() -> None:
    """The switch is ours: without it this pyarrow's default is not the system pool."""
    assert _backend("pass") != "system"


def test_a_started_sidecar_uses_the_system_pool() -> None:
    """start_sidecar (gate, tap, recorder, alerts watch, run) switches the process's pool."""
    code = f"from stampline.cli._start import start_sidecar; start_sidecar({str(EXAMPLE)!r})"
    assert _backend(code) == "system"


@pytest.mark.parametrize("chosen", ["mimalloc", "system"])
def test_a_pool_the_user_chose_is_kept(chosen: str) -> None:
    """ARROW_DEFAULT_MEMORY_POOL, when set, wins."""
    code = "from stampline._common import use_system_memory_pool; use_system_memory_pool()"
    assert _backend(code, ARROW_DEFAULT_MEMORY_POOL=chosen) == chosen
