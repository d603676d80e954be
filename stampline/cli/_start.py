"""Starting a sidecar (`gate`, `tap`, `recorder`, `alerts watch`, and `run` over them): its
configuration loaded, SIGTERM and Ctrl-C wired to a stop, its metrics served, its broker found
— and the parts it needs reachable, or one clear line says which is not.

A broker that does not answer or cannot give what the configuration asks (exactly_once on a
broker without transaction markers), a ClickHouse that refuses the connection or a database name
that is not one end the command with ``error: ...`` naming the address or the value and exit
status 1 — never a traceback, never librdkafka's retry log.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException

from stampline._common import use_system_memory_pool
from stampline.audit import AuditError
from stampline.broker import BrokerError, EmbeddedBroker
from stampline.cli._app import config_path, err, fail
from stampline.collectors import BrokerCheckError
from stampline.config import Config, ConfigError, load_config


@dataclass(frozen=True, slots=True)
class Sidecar:
    """A long-running command, started: its configuration and the event its signals set."""

    path: Path
    config: Config
    stop: threading.Event


def start_sidecar(config: Path | None) -> Sidecar:
    """Load the configuration (exit 1 naming the file when it is not usable) and make SIGTERM
    and Ctrl-C set ``stop``: the command finishes its work in hand, commits and exits 0."""
    path = config_path(config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(f"{path}: configuration is not usable:\n{exc}")
    use_system_memory_pool()  # a long-running process: Arrow's buffers from malloc
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return Sidecar(path, cfg, stop)


def serve_metrics(what: str, config: Config, serve: Callable[[], object]) -> None:
    """With `metrics.enabled`, ``serve()`` the sidecar's /metrics and say where; an address
    that cannot be bound ends the command with ``error: <what>: metrics: <reason host:port>``."""
    m = config.metrics
    if not m.enabled:
        return
    try:
        serve()
    except OSError as exc:
        fail(f"{what}: metrics: {exc}")
    err.print(f"{what}: metrics on {m.address}:{m.port}/metrics", highlight=False)


@contextmanager
def broker(config: Config) -> Iterator[str]:
    """The bootstrap address of the configured broker, or of an embedded one started here
    (`broker.embedded: true`) and stopped on the way out."""
    with EmbeddedBroker() if config.broker.embedded else nullcontext() as embedded:
        bootstrap = embedded.bootstrap_servers if embedded else config.broker.bootstrap_servers
        assert bootstrap is not None  # the configuration's own check: embedded or an address
        yield bootstrap


@contextmanager
def sidecar_broker(what: str, config: Config, topics: list[str]) -> Iterator[str]:
    """The sidecar's broker (see :func:`broker`), reachable, with ``topics`` created when
    `topics.create_missing`; a part that cannot be reached or used inside ends the command
    in one line (see :func:`one_line_errors`)."""
    from stampline.broker import check_reachable, ensure_topics

    with one_line_errors(what), broker(config) as bootstrap:
        check_reachable(bootstrap, config.broker.client)
        if config.topics.create_missing:
            ensure_topics(bootstrap, topics, config.topics.partitions, client=config.broker.client)
        yield bootstrap


def report_progress(stop: threading.Event, line: Callable[[], str], every_s: float = 5) -> None:
    """Print ``line()`` on stderr every ``every_s`` until ``stop`` is set (a daemon thread),
    when it changed: an idle process says nothing new, so it does not repeat it."""

    def loop() -> None:
        last = None
        while not stop.wait(every_s):
            now = line()
            if now != last:
                err.print(now, highlight=False)
                last = now

    threading.Thread(target=loop, name="progress", daemon=True).start()


@contextmanager
def one_line_errors(what: str) -> Iterator[None]:
    """Turn a part that cannot be reached or used into ``error: <what>: <reason>``, exit 1."""
    try:
        yield
    except (BrokerError, AuditError, BrokerCheckError) as exc:
        fail(f"{what}: {_first_line(exc)}")
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(exc)
        fail(f"{what}: Kafka: {reason}")


def _first_line(exc: BaseException) -> str:
    # Store errors append the SQL they ran on later lines; the first line says what failed.
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
