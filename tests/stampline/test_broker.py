"""The embedded broker: a real Kafka-protocol server on a loopback port the OS picked."""

from __future__ import annotations

import socket

import pytest

from stampline.broker import ENV_TANSU_BIN, BrokerError, EmbeddedBroker, ensure_topics
from tests.helpers import produce, read_all


def test_broker_serves_kafka_on_loopback_and_stops() -> None:
    """A fresh broker binds 127.0.0.1, round-trips a record, and frees its port when stopped."""
    with EmbeddedBroker() as b:
        host, port = b.bootstrap_servers.split(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        ensure_topics(b.bootstrap_servers, ["t"], 1)
        produce(b.bootstrap_servers, "t", [(b"k", b"v", [("h", b"1")])])
        (rec,) = read_all(b.bootstrap_servers, "t", 1, idle_s=0.2)
        assert (rec.key, rec.value, rec.headers) == (b"k", b"v", [("h", b"1")])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", int(port)))


def test_ensure_topics_leaves_existing_topics_alone(bootstrap: str, uid: str) -> None:
    """Creating a topic that exists is not an error, and missing ones are created."""
    ensure_topics(bootstrap, [f"{uid}.a"], 2)
    ensure_topics(bootstrap, [f"{uid}.a", f"{uid}.b"], 2)
    produce(bootstrap, f"{uid}.b", [(None, b"x")])


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """Pointing at a Tansu binary that is not there names the path."""
    monkeypatch.setenv(ENV_TANSU_BIN, "/nonexistent/tansu")
    with pytest.raises(BrokerError, match="/nonexistent/tansu"):
        EmbeddedBroker().start()
