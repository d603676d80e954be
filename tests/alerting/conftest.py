"""Real Alertmanager and Prometheus (Debian's packages) on 127.0.0.1 ports the OS picks, and
a webhook receiver that records what Alertmanager notifies."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

AM_BIN = "prometheus-alertmanager"
PROM_BIN = "prometheus"


def free_port() -> int:
    """A port the OS picks (bound and released: the server binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: every notification, with its arrival time."""

    url: str
    received: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, **labels: str) -> list[tuple[int, dict[str, Any]]]:
        """(arrival ns, alert) of every notified alert whose labels include ``labels``."""
        with self.lock:
            return [
                (at, a)
                for at, body in self.received
                for a in body.get("alerts", [])
                if all(a["labels"].get(k) == v for k, v in labels.items())
            ]

    def wait_for(self, timeout_s: float = 30.0, **labels: str) -> list[dict[str, Any]]:
        """The alerts matching ``labels`` once at least one arrived."""
        deadline = time.monotonic() + timeout_s
        while not self.alerts(**labels):
            assert time.monotonic() < deadline, f"no notification for {labels}"
            time.sleep(0.02)
        return [a for _at, a in self.alerts(**labels)]


@pytest.fixture(scope="session")
def webhook() -> Iterator[Webhook]:
    """An HTTP server in a thread recording Alertmanager's webhook posts."""
    hook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook.lock:
                hook.received.append((time.time_ns(), orjson.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"{what} exited: {proc.stderr.read() if proc.stderr else ''!r}"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} not ready at {url}"
        time.sleep(0.1)


def alertmanager_config(webhook_url: str) -> str:
    """Route everything to the webhook at once (no group wait), resolves included."""
    return f"""\
route:
  receiver: hook
  group_by: [alertname, provider, instrument]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    folder: Path


def start(binary: str, args: list[str], folder: Path, ready_path: str, what: str) -> Server:
    """Start ``binary`` on a port the OS picked; retried if another process took it first."""
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (system-packages.txt; ./dev test installs it)")
    for _attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        full = [binary, *(a.replace("{port}", str(port)) for a in args)]
        with (folder / f"{what}.log").open("wb") as log:
            proc = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
        try:
            _wait_ready(url + ready_path, proc, what)
            return Server(url, proc, folder)
        except AssertionError:
            proc.kill()
            proc.wait()
    raise AssertionError(f"{what} did not start: {(folder / f'{what}.log').read_text()[-2000:]}")


def stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Iterator[Server]:
    """A real Alertmanager notifying the webhook, stopped after the session."""
    folder = tmp_path_factory.mktemp("alertmanager")
    (folder / "am.yml").write_text(alertmanager_config(webhook.url))
    server = start(
        AM_BIN,
        [
            "--config.file=am.yml",
            f"--storage.path={folder / 'data'}",
            "--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        folder,
        "/-/ready",
        "alertmanager",
    )
    yield server
    stop(server)


def start_prometheus(
    folder: Path, scrape: str, alertmanager_url: str, rule_file: str, external: str
) -> Server:
    """A real Prometheus scraping ``scrape`` every second, evaluating ``rule_file`` every
    second and sending alerts (labelled ``source=<external>``) to Alertmanager."""
    am = alertmanager_url.removeprefix("http://")
    (folder / "prometheus.yml").write_text(
        f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
  external_labels: {{source: {external}}}
rule_files: [{rule_file}]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["{am}"]}}]
scrape_configs:
  - job_name: stampline
    static_configs: [{{targets: ["{scrape}"]}}]
"""
    )
    return start(
        PROM_BIN,
        [
            "--config.file=prometheus.yml",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            "--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        folder,
        "/-/ready",
        "prometheus",
    )


class FlakyServer:
    """Alertmanager's API as an outage shows it: a local HTTP server in a thread, on a
    127.0.0.1 port the OS picks, that is ``down`` (bound, not listening: connections
    refused), answers ``500``, ``hang``s (accepts and never answers), answers ``ok`` (200),
    or ``forward``s to a real Alertmanager. It records every request it answered."""

    def __init__(self) -> None:
        self.mode = "down"
        self.forward_to = ""
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # method, path, ...
        self._released = threading.Event()
        self._thread: threading.Thread | None = None
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = flaky.mode
                if mode == "hang":
                    flaky._released.wait(60)
                    self.close_connection = True
                    return
                if mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"down for maintenance")
                    return
                flaky.requests.append(
                    (self.command, self.path, dict(self.headers), orjson.loads(body or b"null"))
                )
                status, answer = 200, b""
                if mode == "forward":
                    request = urllib.request.Request(
                        flaky.forward_to + self.path,
                        data=body or None,
                        method=self.command,
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=10) as r:
                        status, answer = r.status, r.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.server_bind()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def up(self, mode: str, forward_to: str = "") -> None:
        """Answer as ``mode`` from now on (listening from the first call on)."""
        self.forward_to = forward_to
        self.mode = mode
        if mode == "hang":
            self._released.clear()
        else:
            self._released.set()  # hung requests end, unanswered
        if self._thread is None:
            self._server.server_activate()
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()

    def posted_alerts(self) -> list[dict[str, Any]]:
        """Every alert posted to ``/api/v2/alerts`` and answered, in arrival order."""
        return [a for m, p, _h, body in self.requests if p == "/api/v2/alerts" for a in body]

    def close(self) -> None:
        self._released.set()
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    """An Alertmanager stand-in that is down until told otherwise."""
    server = FlakyServer()
    yield server
    server.close()
