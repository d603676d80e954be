"""The compiled gate and tap on a broker reached over TLS only (tests/tlsbroker.py).

Most real clusters ask for TLS. The compiled route's librdkafka links Debian's OpenSSL
(docs/native.md), so it takes the same settings as confluent-kafka's and stays compiled.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stampline.broker import BrokerError, check_reachable, ensure_topics
from stampline.collectors import GateSettings, TrailTopic, consumer_config
from stampline.collectors._source import open_source
from stampline.demo import rules_file
from stampline.rules import RuleSet
from tests.collectors.test_gate import js, quote
from tests.collectors.test_tap_native import observed, per_record, run_tap
from tests.helpers import GateRun, produce, read_all
from tests.tlsbroker import TlsBroker, self_signed, tls_broker

GOOD, BAD = 300, 100


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    with tls_broker(tmp_path_factory.mktemp("tls")) as broker:
        yield broker


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    """A broker that also asks every client for its certificate (mutual TLS)."""
    with tls_broker(tmp_path_factory.mktemp("mtls"), mutual=True) as broker:
        yield broker


def _records() -> list[tuple[bytes, bytes]]:
    good = [(b"g%d" % i, js(quote(seq=i))) for i in range(GOOD)]
    bad = [(b"b%d" % i, js(quote(seq=GOOD + i, price="n/a"))) for i in range(BAD)]
    return good + bad


@pytest.mark.parametrize("broker", ["tls", "mtls"])
def test_the_compiled_gate_judges_a_feed_it_reaches_over_tls(
    broker: str, request: pytest.FixtureRequest, uid: str
) -> None:
    """Over TLS, and over TLS where the broker asks for the client's certificate too, the gate
    stays on the compiled route, consumer and producer alike, and every record lands once:
    the good ones clean, the refused ones dead-lettered, the trail written."""
    tls: TlsBroker = request.getfixturevalue(broker)
    raw, clean, dlq, trail = (f"{uid}.{n}" for n in ("raw", "clean", "dlq", "trail"))
    ensure_topics(tls.bootstrap, [raw, clean, dlq, trail], client=tls.client)
    produce(tls.bootstrap, raw, _records(), extra=tls.client)
    settings = GateSettings(
        tls.bootstrap,
        (raw,),
        clean,
        dlq,
        group_id=f"{uid}-g",
        consumer=tls.client,
        producer=tls.client,
    )
    run = GateRun(settings, RuleSet.load([rules_file()]), TrailTopic(trail))
    run.wait_for(GOOD + BAD)
    run.stop()
    assert run.gate.path == "compiled", run.gate._reference_why
    assert run.gate.consumer_path == "compiled"
    out = read_all(tls.bootstrap, clean, GOOD, extra=tls.client)
    dead = read_all(tls.bootstrap, dlq, BAD, extra=tls.client)
    assert sorted(r.key for r in out) == sorted(b"g%d" % i for i in range(GOOD))
    assert sorted(r.key for r in dead) == sorted(b"b%d" % i for i in range(BAD))
    assert all(r.header("stampline.event_id") for r in out)
    assert read_all(tls.bootstrap, trail, 1, extra=tls.client), "no trail message"


def test_the_compiled_tap_observes_a_feed_it_reaches_over_tls(tls: TlsBroker, uid: str) -> None:
    """Over TLS the tap stays on its compiled loop and observes every record once."""
    topic = f"{uid}.md"
    ensure_topics(tls.bootstrap, [topic], client=tls.client)
    produce(tls.bootstrap, topic, _records()[:GOOD], extra=tls.client)
    tap, sink, _ = observed(tls.bootstrap, [topic], f"{uid}-t", True, consumer=tls.client)
    run_tap(tap, GOOD)
    assert tap.path == "compiled", tap._reference_why
    assert tap.stats.records == GOOD
    assert len(per_record(sink.rows())) == GOOD


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_a_certificate_from_another_authority_is_named_in_the_log_on_both_routes(
    tls: TlsBroker, tmp_path: Path, uid: str, compiled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The gate's consumer cannot verify the broker: on either route librdkafka's reason
    reaches stampline's log (the compiled clients' lines through forward_native_log), and
    ``check_reachable``, which ``stampline start`` asks first, names it in its error."""
    other, _ = self_signed(tmp_path, "another authority")
    client = {**tls.client, "ssl.ca.location": str(other)}
    with pytest.raises(BrokerError, match="certificate verify failed"):
        check_reachable(tls.bootstrap, client, timeout_s=3)
    caplog.set_level(logging.INFO, "stampline.kafka")
    caplog.clear()
    config = consumer_config(tls.bootstrap, f"{uid}-g", client)
    source, why = open_source(
        tls.bootstrap, f"{uid}-g", config, [f"{uid}.raw"], print, print, compiled=compiled
    )
    assert why == ("" if compiled else "not asked for")
    deadline = time.monotonic() + 30
    try:
        while not _refused(caplog) and time.monotonic() < deadline:
            source.take(100, 1 << 20, 0.1)
    finally:
        source.close()
    (line, *_) = _refused(caplog)
    assert ("[gate consumer]" in line) == compiled, line
    assert "ssl.ca.location" in line


def test_stampline_gate_with_a_certificate_it_cannot_verify_ends_naming_it(
    tls: TlsBroker, tmp_path: Path
) -> None:
    """`stampline gate` against the TLS broker with another authority's certificate: exit 1
    and one error line with the client's reason, not a start that waits in silence."""
    other, _ = self_signed(tmp_path, "another authority")
    config = tmp_path / "stampline.yaml"
    config.write_text(
        f"version: 1\nbroker:\n  bootstrap_servers: {tls.bootstrap}\n"
        f"  client: {{security.protocol: ssl, ssl.ca.location: '{other}'}}\n"
        "topics: {raw: [md.raw], clean: md.clean, dead_letter: md.dlq}\n"
        f"rules: {{files: ['{rules_file()}']}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAMPLINE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "stampline", "gate", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"cannot reach Kafka at {tls.bootstrap}" in error
    assert "SSL handshake failed" in error
    assert "certificate verify failed" in error


def test_a_client_without_the_certificate_a_broker_asks_for_is_told_so(mtls: TlsBroker) -> None:
    """Mutual TLS without the client's own certificate: ``check_reachable`` names the
    broker's refusal ("certificate required"); with it, the same broker answers."""
    check_reachable(mtls.bootstrap, mtls.client, timeout_s=10)
    anonymous = {k: v for k, v in mtls.client.items() if k.startswith(("security", "ssl.ca"))}
    with pytest.raises(BrokerError, match="certificate required"):
        check_reachable(mtls.bootstrap, anonymous, timeout_s=3)


def _refused(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "certificate verify failed" in r.getMessage()]
