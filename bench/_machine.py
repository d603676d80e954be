"""What every benchmark reports about the machine it ran on, and how busy it was."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import orjson


def machine(**extra: Any) -> dict[str, Any]:
    """Cores, memory, Python, platform, and the 1-minute load average when measuring began
    (a load above the core count means other work competed for the machine)."""
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **extra,
    }


def write_result(name: str, result: dict[str, Any], json_out: bool) -> None:
    """Write ``bench/results/<name>.json``, print the figures as a table on stderr, and the
    JSON on stdout with ``--json``."""
    out = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    (results / f"{name}.json").write_text(out + "\n")
    for k, v in result.items():
        if k in ("machine", "targets"):
            continue
        for name, value in v.items() if isinstance(v, dict) else [(k, v)]:
            label = f"{k}.{name}" if isinstance(v, dict) else k
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            text = f"{value:>14,}" if is_number else str(value)
            print(f"{label:32} {text}", file=sys.stderr)
    print(f"machine: {result['machine']}", file=sys.stderr, flush=True)
    if json_out:
        print(out)
