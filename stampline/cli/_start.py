"""Starting a sidecar: the parts it needs are reachable, or one clear line says which is not.

A broker that does not answer or cannot give what the configuration asks (exactly_once on a
broker without transaction markers), a ClickHouse that refuses the connection or a database name
that is not one end the command with ``error: ...`` naming the address or the value and exit
status 1 — never a traceback, never librdkafka's retry log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException

from stampline.audit import AuditError
from stampline.broker import BrokerError
from stampline.cli._app import fail
from stampline.collectors import BrokerCheckError


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
