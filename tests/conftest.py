"""Session-wide real parts: one Tansu broker over TCP and one chDB data directory.

chDB serves one data directory per process, so every test gets its own database in the
shared directory, and its own uniquely named topics and consumer groups on the broker.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stampline.audit import ChdbStore
from stampline.broker import EmbeddedBroker, ensure_topics
from tests.helpers import drop_database


@pytest.fixture(autouse=True)
def _alone_when_marked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist (`./dev test`), a test marked ``alone`` runs while no other worker
    runs a test: it holds the run's lock file exclusively, every other test holds it shared.
    A gate's peak memory grows with how far it lags its input, so it is measured on a machine
    no other test loads (692 MiB beside the recorder-kill test, 420 MiB alone)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # the workers' temp folders are popen-gw0, popen-gw1, ... in this run's own folder
    lock = tmp_path_factory.getbasetemp().parent / "alone.lock"
    alone = request.node.get_closest_marker("alone") is not None
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        yield  # closing the file releases the lock


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """The embedded Kafka-protocol broker (Tansu), started once for the session."""
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture(scope="session")
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap_servers


@pytest.fixture(scope="module")
def own_bootstrap() -> Iterator[str]:
    """A broker of the module's own, for tests that pour hundreds of MB through it: the
    embedded broker keeps every record in memory, and the session's broker stays fast."""
    with EmbeddedBroker() as b:
        yield b.bootstrap_servers


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def uid() -> str:
    """A short unique name part for this test's topics, groups and database."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def store(chdb_dir: Path, uid: str) -> Iterator[ChdbStore]:
    """A fresh audit store: its own database in the session's chDB directory, dropped after
    the test."""
    with ChdbStore(chdb_dir, f"t_{uid}") as s:
        yield s
        drop_database(s)


@pytest.fixture
def make_topics(bootstrap: str, uid: str) -> Callable[..., list[str]]:
    """Create topics named after this test; returns their full names."""

    def make(*names: str, partitions: int = 3) -> list[str]:
        full = [f"{uid}.{n}" for n in names]
        ensure_topics(bootstrap, full, partitions)
        return full

    return make
