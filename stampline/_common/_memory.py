"""The memory pool a long-running stampline process gives Arrow."""

from __future__ import annotations

import os


def use_system_memory_pool() -> None:
    """Make the C library's allocator Arrow's default pool in this process, unless the user
    chose one with ``ARROW_DEFAULT_MEMORY_POOL``.

    Why: pyarrow's default, its bundled mimalloc, gives each trail message's growing IPC
    buffer fresh pages and soon returns them, so every message faulted in and zeroed new
    (huge) pages: about half of the gate's trail writer's CPU, and up to a quarter of the
    recorder's per row. docs/native.md, "Arrow's memory pool", has the runs.
    Buffers made before the switch stay with the pool that made them.
    """
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa  # here: the leaf package is imported by commands that need no Arrow

        pa.set_memory_pool(pa.system_memory_pool())
