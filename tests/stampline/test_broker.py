"""The embedded broker: a real Kafka-protocol server on a loopback port the OS picked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from stampline.broker import ENV_TANSU_BIN, BrokerError, EmbeddedBroker, ensure_topics
from tests.helpers import children_of, produce, read_all, running, wait_gone


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


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux-only")
def test_the_broker_stops_when_its_owner_is_killed() -> None:
    """Tansu started by a process that then dies by SIGKILL stops too, and frees its port."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from stampline.broker import EmbeddedBroker\n"
            "print(EmbeddedBroker().start().port, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    tansu: dict[int, str] = {}
    try:
        assert owner.stdout is not None
        port = int(owner.stdout.readline())
        tansu = children_of(owner.pid)
        assert [cmd for cmd in tansu.values() if "tansu" in cmd] == list(tansu.values())
        assert len(tansu) == 1
        owner.kill()
        owner.wait(10)
        wait_gone(tansu, 10)
    finally:
        owner.kill()
        owner.communicate(timeout=10)
        for pid in tansu:  # after a failure: leave no broker behind
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))
