"""The supervisor behind `stampline run`: restarts exited children with a growing back-off,
and stops them all, killing one that ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stampline._supervisor import Child, Supervisor
from tests.helpers import running, wait_gone

PY = sys.executable


def test_an_exiting_child_is_restarted_with_a_doubling_back_off() -> None:
    """A child that keeps failing at once is restarted after 0.1 s, then 0.2 s, then 0.4 s,
    and each exit is reported with its exit code."""
    child = Child("flaky", [PY, "-c", "raise SystemExit(3)"])
    sup = Supervisor([child], backoff_s=0.1, max_backoff_s=0.4, stable_s=60)
    messages: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=sup.run, args=(stop, messages.append))
    thread.start()
    deadline = time.monotonic() + 30
    while child.restarts < 4:
        assert time.monotonic() < deadline, messages
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    exits = [m for m in messages if m.startswith("flaky exited")]
    assert exits[:4] == [
        "flaky exited with exit code 3 after " + m.split(" after ")[1] for m in exits[:4]
    ]
    delays = [m.rsplit("restarting in ", 1)[1] for m in exits[:4]]
    assert delays == ["0.1s", "0.2s", "0.4s", "0.4s"]


def test_stop_sends_sigterm_and_kills_a_child_that_ignores_it() -> None:
    """On stop a child that exits on SIGTERM stops cleanly; one that ignores SIGTERM is killed
    after the timeout, and both are reported."""
    polite = Child("polite", [PY, "-c", "import time; time.sleep(60)"])
    stubborn = Child(
        "stubborn",
        [
            PY,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)",
        ],
    )
    sup = Supervisor([polite, stubborn], stop_timeout_s=1.0)
    messages: list[str] = []
    for child in (polite, stubborn):
        sup.start(child, messages.append)
    time.sleep(1.0)  # let the stubborn one install its handler
    sup.stop_all(messages.append)
    assert "stopped polite (signal SIGTERM)" in messages
    assert "stubborn did not stop in 1s: killing it" in messages
    assert "stopped stubborn (signal SIGKILL)" in messages


def test_without_restarts_an_exited_child_is_listed_with_its_last_logged_line(
    tmp_path: Path,
) -> None:
    """With restart=False (the demo) a child that exits is reported and listed, never
    restarted, and the last line it wrote to its log says why; a child stopped on purpose
    is not an exit."""
    crash = Child(
        "crash",
        [PY, "-c", "import sys; print('starting'); sys.exit('crash: the broker went away')"],
        log=tmp_path / "crash.log",
    )
    calm = Child("calm", [PY, "-c", "import time; time.sleep(60)"], log=tmp_path / "calm.log")
    sup = Supervisor([crash, calm], restart=False, stop_timeout_s=5)
    messages: list[str] = []
    sup.start_all(messages.append)
    deadline = time.monotonic() + 30
    while not sup.exited:
        assert time.monotonic() < deadline, messages
        sup.check(messages.append)
        time.sleep(0.05)
    sup.stop([calm], messages.append)
    for _ in range(5):
        sup.check(messages.append)
    assert sup.exited == [crash]
    assert crash.restarts == 0
    assert crash.last_exit == 1
    assert crash.last_line() == "crash: the broker went away"
    assert "stopped calm (signal SIGTERM)" in messages
    exits = [m for m in messages if "exited" in m]
    assert len(exits) == 1
    assert exits[0].startswith("crash exited with exit code 1 after ")
    assert "restarting" not in exits[0]


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
def test_a_child_gets_sigterm_when_its_supervising_process_is_killed(tmp_path: Path) -> None:
    """When the process that supervises a child dies by SIGKILL, the child gets SIGTERM and
    stops through its own handler instead of running on; its added niceness still applies."""
    mark = tmp_path / "child.txt"
    child_code = (
        "import os, signal, sys, time\n"
        f"mark = {str(mark)!r}\n"
        "def stop(*_):\n"
        "    open(mark, 'a').write('SIGTERM\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open(mark, 'a').write(f'ready {os.nice(0)}\\n')\n"
        "time.sleep(60)\n"
    )
    parent_code = (
        "import sys, time\n"
        "from stampline._supervisor import Child, Supervisor\n"
        f"child = Child('child', [sys.executable, '-c', {child_code!r}], nice=3)\n"
        "Supervisor([child]).start(child, print)\n"
        "sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([PY, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline().rsplit(" ", 1)[1])
        deadline = time.monotonic() + 30
        while not mark.exists() or "ready" not in mark.read_text():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        parent.kill()
        parent.wait(10)
        wait_gone({child: "child"}, 10)
    finally:
        parent.kill()
        if child and running(child):  # after a failure: it holds the parent's stdout
            os.kill(child, signal.SIGKILL)
        parent.communicate(timeout=10)
    assert mark.read_text() == f"ready {os.nice(0) + 3}\nSIGTERM\n"


def test_a_crash_looping_child_is_failing_with_its_last_log_line_and_a_recovered_one_is_not(
    tmp_path: Path,
) -> None:
    """A child that exits at every start is failing ("never came up", with the last line it
    logged, in every exit report too); one that failed once and now runs, and one that never
    exited, are not."""
    crash = Child(
        "crash",
        [PY, "-c", "import sys; sys.exit('boom: the port is taken')"],
        log=tmp_path / "crash.log",
    )
    mark = tmp_path / "once"
    once = Child(
        "once",
        [
            PY,
            "-c",
            f"import pathlib, sys, time; m = pathlib.Path({str(mark)!r})\n"
            "if not m.exists(): m.touch(); sys.exit('first start fails')\n"
            "time.sleep(60)",
        ],
        log=tmp_path / "once.log",
    )
    steady = Child("steady", [PY, "-c", "import time; time.sleep(60)"])
    sup = Supervisor([crash, once, steady], backoff_s=0.05, stable_s=60, stop_timeout_s=5)
    messages: list[str] = []
    sup.start_all(messages.append)
    deadline = time.monotonic() + 60
    while crash.quick_exits < 3 or once.restarts < 1 or once.proc is None:
        assert time.monotonic() < deadline, messages
        sup.check(messages.append)
        time.sleep(0.05)
    time.sleep(0.5)  # "once" is past its failing first start, and keeps running
    sup.check(messages.append)
    sup.stop_all(messages.append)
    assert sup.failing() == [crash]
    assert crash.trouble().startswith("crash never came up (")
    assert crash.trouble().endswith(
        "quick exit(s) in a row); last log line: boom: the port is taken"
    )
    assert once.quick_exits == 1
    exits = [m for m in messages if m.startswith("crash exited")]
    assert all(m.endswith("s: boom: the port is taken") for m in exits), exits


def test_a_child_that_came_up_then_crash_loops_or_is_down_at_stop_is_failing(
    tmp_path: Path,
) -> None:
    """A child that ran past ``stable_s`` and then exits at every start is "crash-looping at
    stop"; one that came up and exited once, and is waiting out its back-off when the
    deployment stops, is "down at stop": both fail the run, each with its last log line."""

    def came_up_then(exit_at_once: str, name: str) -> Child:
        mark = tmp_path / name
        return Child(
            name,
            [
                PY,
                "-c",
                f"import pathlib, sys, time; m = pathlib.Path({str(mark)!r})\n"
                "if not m.exists(): m.touch(); time.sleep(0.6); sys.exit('ran, then fell over')\n"
                f"sys.exit({exit_at_once!r})",
            ],
            log=tmp_path / f"{name}.log",
        )

    looping = came_up_then("the disk is full", "looping")
    down = came_up_then("unused: it is not restarted in time", "down")
    sup = Supervisor([looping], backoff_s=0.05, stable_s=0.3, stop_timeout_s=5)
    slow = Supervisor([down], backoff_s=30, stable_s=0.3, stop_timeout_s=5)
    messages: list[str] = []
    sup.start_all(messages.append)
    slow.start_all(messages.append)
    deadline = time.monotonic() + 60
    while looping.quick_exits < 2 or down.last_exit is None:
        assert time.monotonic() < deadline, messages
        sup.check(messages.append)
        slow.check(messages.append)
        time.sleep(0.05)
    sup.stop_all(messages.append)
    slow.stop_all(messages.append)
    assert looping.came_up
    assert down.came_up
    assert sup.failing() == [looping]
    assert looping.trouble().startswith("looping was crash-looping at stop (")
    assert looping.trouble().endswith("last log line: the disk is full")
    assert slow.failing() == [down]
    assert down.quick_exits == 0
    assert down.trouble() == (
        "down was down at stop (0 quick exit(s) in a row); last log line: ran, then fell over"
    )
