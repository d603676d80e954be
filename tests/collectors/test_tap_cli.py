"""`stampline tap`: a process that observes topics until SIGTERM, then reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from stampline.audit import ChdbStore
from stampline.collectors import Stamps
from stampline.demo import rules_file
from tests.helpers import produce, record_until

STAMPLINE = [sys.executable, "-m", "stampline"]


def _config(tmp_path: Path, bootstrap: str, trail: str = "unused.trail", **tap: object) -> Path:
    path = tmp_path / "tap.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "broker": {"bootstrap_servers": bootstrap},
                "topics": {
                    "raw": ["unused.raw"],
                    "clean": "unused.clean",
                    "dead_letter": "x.d",
                    "trail": trail,
                },
                "store": {"path": "trail"},
                "rules": {"files": [str(rules_file())]},
                "tap": tap,
            }
        )
    )
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}


def test_tap_process_records_sightings_and_reports_json_on_sigterm(
    bootstrap: str, make_topics: Callable[..., list[str]], uid: str, tmp_path: Path
) -> None:
    """`stampline tap --topic T --json` writes one sighting per record and, on SIGTERM, prints
    its counts as JSON and exits 0."""
    topic, trail_topic = make_topics("clean", "trail", partitions=1)
    stamped = Stamps(
        "5f0c7a52-8a39-4b0e-8f7e-0c1d2e3f4a5b", 1_750_000_000 * 10**9, 1_750_000_001 * 10**9, 3
    ).headers()
    produce(bootstrap, topic, [(None, b'{"k":1}', stamped), (None, b'{"k":2}')])
    config = _config(tmp_path, bootstrap, trail_topic, group_id=f"{uid}-tap", key_fields=["k"])
    proc = subprocess.Popen(
        [*STAMPLINE, "tap", "--config", str(config), "--topic", topic, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while not any("records 2 " in line for line in seen):  # progress every 5 s
            assert time.monotonic() < deadline, seen
            line = proc.stderr.readline()
            assert line, f"the tap exited early: {seen}"
            seen.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err
    assert json.loads(out) == {
        "records": 2,
        "observations": 2,
        "unstamped": 1,
        "keyed": 1,
        "bad_stamps": 0,
    }
    sql = "SELECT count() AS n FROM {db}.trail WHERE stage = {s:String}"
    with ChdbStore(tmp_path / "trail", "stampline") as trail:
        # The tap wrote no store: its sightings are on the trail topic, for the recorder.
        assert trail.query(sql, {"s": f"tap:{topic}"}) == [{"n": 0}]
        record_until(
            bootstrap,
            trail_topic,
            trail,
            f"{uid}-rec",
            lambda: trail.query(sql, {"s": f"tap:{topic}"})[0]["n"] >= 2,
        )
        (row,) = trail.query(sql, {"s": f"tap:{topic}"})
    assert row["n"] == 2


def test_tap_without_topics_is_a_usage_error(bootstrap: str, tmp_path: Path) -> None:
    """With no --topic and no tap.topics the tap exits 2 and says how to name topics."""
    config = _config(tmp_path, bootstrap)
    done = subprocess.run(
        [*STAMPLINE, "tap", "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert "--topic" in done.stderr
    assert "tap.topics" in done.stderr


def test_a_bad_tap_or_metrics_key_is_named(bootstrap: str, tmp_path: Path) -> None:
    """A wrong value under tap: or metrics: stops the tap with the key path named."""
    config = _config(tmp_path, bootstrap, consume_batch=0)
    text = config.read_text() + "metrics: {port: 70000}\n"
    config.write_text(text)
    done = subprocess.run(
        [*STAMPLINE, "tap", "--config", str(config), "--topic", "t"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert done.returncode == 1
    assert "tap.consume_batch" in done.stderr
    assert "metrics.port" in done.stderr


def test_log_lines_name_the_part_stampline_run_started(
    bootstrap: str, uid: str, tmp_path: Path
) -> None:
    """A part started with STAMPLINE_PART_NAME (as `stampline run` starts gate-1, gate-2 …)
    names it in each of its log lines."""
    config = _config(tmp_path, bootstrap, f"{uid}.trail", group_id=f"{uid}-tap")
    proc = subprocess.Popen(
        [*STAMPLINE, "tap", "--config", str(config), "--topic", f"{uid}.absent"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), "STAMPLINE_PART_NAME": "gate-2"},
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while True:  # the absent topic is logged as a warning
            assert time.monotonic() < deadline
            line = proc.stderr.readline()
            assert line, "the tap exited early"
            if " WARNING " in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert " WARNING [gate-2] stampline." in line
