"""Supervised child processes: what `stampline run` starts, restarts and stops.

Each child is a stampline command in its own process (`gate`, `tap`, `recorder`). A child
that exits while the deployment runs is restarted after a back-off that doubles with each
quick failure (from ``backoff_s`` up to ``max_backoff_s``) and resets once the child has
stayed up for ``stable_s``; every exit and restart is reported, with the last line the child
logged. ``stop`` sends SIGTERM to every child (each one finishes its work in hand, commits
and exits), waits up to ``stop_timeout_s``, then SIGKILLs what is left.

A child *came up* once a run of it lasted ``stable_s``. One that exited on its own within
``stable_s`` of starting ``CRASH_LOOP`` times in a row (and has not come up since), or that is
down (exited, waiting to restart) when the deployment stops, is *failing*: ``failing()``
lists them, and `stampline run` exits non-zero for them.

On Linux a child also gets SIGTERM when the supervising process dies without stopping it
(SIGKILL, the OOM killer; see stampline/_orphans.py), so it stops the same clean way. That
signal follows the thread that started the child: run ``run``, ``start`` and ``check`` from
one thread that outlives the children.

With ``restart=False`` (the demo: a short run that must fail, not limp on) an exited child
is reported and listed in ``exited`` instead of restarted. A child with a ``log`` writes its
stdout and stderr there instead of the parent's terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stampline._orphans import die_with_parent

CRASH_LOOP = 2  # quick exits in a row that make a crash loop (one may be an outside kill)


@dataclass(slots=True)
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None  # stdout and stderr go here (appended) instead of the terminal
    nice: int = 0  # added to the child's niceness: a part off the critical path yields CPU
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    next_start: float = 0.0
    last_exit: int | None = None
    stopped: bool = False  # stopped on purpose: not an exit to report or restart
    quick_exits: int = 0  # exits in a row within ``stable_s`` of starting
    came_up: bool = False  # a run of it lasted ``stable_s``

    def last_line(self) -> str:
        """The last non-empty line the child logged ("" without a log): why it stopped."""
        if self.log is None:
            return ""
        try:
            with self.log.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.proc.pid if self.proc is not None else None,
            "running": self.proc is not None and self.proc.poll() is None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "quick_exits": self.quick_exits,
            "came_up": self.came_up,
        }

    def trouble(self) -> str:
        """Why this failing child is failing, with the last line it logged."""
        if not self.came_up:
            how = "never came up"
        elif self.quick_exits >= CRASH_LOOP:
            how = "was crash-looping at stop"
        else:
            how = "was down at stop"
        text = f"{self.name} {how} ({self.quick_exits} quick exit(s) in a row)"
        last = self.last_line()
        return f"{text}; last log line: {last}" if last else text


Report = Callable[[str], None]


class Supervisor:
    """Keeps ``children`` running until ``stop`` is set, then stops them all."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        stop_timeout_s: float = 60.0,
        base_env: Mapping[str, str] | None = None,
        restart: bool = True,
    ) -> None:
        self.children = list(children)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_s = stable_s
        self.stop_timeout_s = stop_timeout_s
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.restart = restart
        self.exited: list[Child] = []  # with restart=False: children that exited, in order
        self._lock = threading.Lock()

    def start(self, child: Child, report: Report) -> None:
        env = {**self.base_env, **child.env}
        nice = child.nice
        renice = (lambda: os.nice(nice) and None) if nice else None
        # SIGTERM when this process dies, even by SIGKILL: no orphan keeps the store lock.
        pre = die_with_parent(renice)
        if child.log is not None:
            with child.log.open("ab") as log:  # the child keeps its own descriptor
                child.proc = subprocess.Popen(
                    child.argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pre
                )
        else:
            child.proc = subprocess.Popen(child.argv, env=env, preexec_fn=pre)
        child.started = time.monotonic()
        report(f"started {child.name} pid {child.proc.pid}")

    def start_all(self, report: Report) -> None:
        """Start every child at once: each is its own process, so their start-ups overlap."""
        for child in self.children:
            self.start(child, report)

    def run(self, stop: threading.Event, report: Report) -> None:
        """Start every child and keep them running until ``stop`` is set; then stop them."""
        try:
            self.start_all(report)
            while not stop.wait(0.2):
                self.check(report)
        finally:
            self.stop_all(report)

    def check(self, report: Report) -> None:
        """Notice exited children and restart those whose back-off has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.stopped:
                continue
            proc = child.proc
            up = now - child.started
            if proc is not None and up >= self.stable_s:
                child.came_up, child.quick_exits = True, 0
            if proc is not None and proc.poll() is not None:
                child.last_exit = proc.returncode
                child.proc = None
                exited = f"{child.name} exited with {exit_text(proc.returncode)} after {up:.1f}s"
                last = child.last_line()
                why = f": {last}" if last else ""
                if not self.restart:
                    self.exited.append(child)
                    child.next_start = float("inf")
                    report(exited + why)
                    continue
                if up >= self.stable_s or child.backoff_s == 0:
                    child.backoff_s = self.backoff_s
                else:
                    child.backoff_s = min(child.backoff_s * 2, self.max_backoff_s)
                if up < self.stable_s:
                    child.quick_exits += 1
                child.next_start = now + child.backoff_s
                report(f"{exited}; restarting in {child.backoff_s:.1f}s{why}")
            if child.proc is None and now >= child.next_start:
                child.restarts += 1
                self.start(child, report)

    def stop_all(self, report: Report) -> None:
        self.stop(self.children, report)

    def failing(self) -> list[Child]:
        """The children that are failing (see the module's docstring): crash-looping, or down
        (exited, waiting to restart). Asked after ``stop`` it judges them as they were then."""
        return [c for c in self.children if c.quick_exits >= CRASH_LOOP or c.proc is None]

    def stop(self, children: Sequence[Child], report: Report) -> None:
        """SIGTERM ``children`` together, wait for each (SIGKILL after ``stop_timeout_s``)."""
        for child in children:
            child.stopped = True
        running = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                report(f"{child.name} did not stop in {self.stop_timeout_s:.0f}s: killing it")
                child.proc.kill()
                child.proc.wait(10)
            child.last_exit = child.proc.returncode
            report(f"stopped {child.name} ({exit_text(child.proc.returncode)})")


def exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
