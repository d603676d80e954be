"""The gate's backlog is its own hop: providers on time, a gate that starts late.

Through the real gate, the embedded broker and chDB. Each record's origin is the wall clock
when it is produced (the provider is on time). alpha publishes first; bravo and charlie
publish STALL_S later; the gate starts SETTLE_S after that and takes everything in one go.
So alpha's records waited on the broker STALL_S longer than its peers': origin -> gate says
alpha is late, yet the time was the gate's queue, not alpha's. The reports must say so:
provider -> broker ~0 for all three, broker -> gate large, no clock flag on alpha.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from stampline.audit import ChdbStore, hotspots, providers_compare, replay_event
from stampline.broker import ensure_topics
from stampline.cli import app
from stampline.collectors import GateSettings
from stampline.dashboards import ALL, TimeRange, expand
from stampline.dashboards._providers import LATENCY
from stampline.rules import RuleSet
from tests.helpers import GateRun, drop_database, produce

pytestmark = pytest.mark.slow

MS = 1_000_000
S = 1_000_000_000
STALL_S = 2.0  # alpha's records wait this much longer on the broker than its peers'
SETTLE_S = 0.5  # everyone's records wait at least this long: the gate starts late
# origin -> broker, generously: produce and append on a CI machine under load; still well
# apart from the queue wait (STALL_S + SETTLE_S) it is told from
ON_TIME_NS = 1000 * MS
RULES = """
version: 2
rules:
  - id: quantity.non_negative
    version: 1
    kind: range
    field: quantity
    min: 0
"""


def _quotes(provider: str, n: int) -> list[tuple[bytes, bytes]]:
    """``n`` quotes born now (the provider is on time)."""
    now_ms = time.time_ns() // MS
    return [
        (
            f"{provider}:{i}".encode(),
            orjson.dumps(
                {
                    "provider": provider,
                    "instrument": f"I{i:02d}",
                    "seq": 0,
                    "ts": now_ms,
                    "price": 100.0,
                    "quantity": 1,
                }
            ),
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def stalled(bootstrap: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The store after alpha, then (STALL_S later) bravo and charlie, were taken in by a gate
    started SETTLE_S after the last of them."""
    uid = uuid.uuid4().hex[:10]
    raw, clean, dlq = (f"{uid}.{n}" for n in ("raw", "clean", "dlq"))
    ensure_topics(bootstrap, [raw, clean, dlq], 1)
    rules_path = tmp_path_factory.mktemp("rules") / "q.rules.yaml"
    rules_path.write_text(RULES)
    with ChdbStore(chdb_dir, f"queue_{uid}") as store:
        produce(bootstrap, raw, _quotes("alpha", 10), partition=0)
        time.sleep(STALL_S)
        produce(bootstrap, raw, _quotes("bravo", 10) + _quotes("charlie", 10), partition=0)
        time.sleep(SETTLE_S)
        gate = GateRun(
            GateSettings(bootstrap, (raw,), clean, dlq, group_id=f"{uid}-gate", clock_err_ns=MS),
            RuleSet.load([rules_path]),
            store,
        )
        gate.wait_for(30)
        gate.stop()
        yield store
        drop_database(store)


def test_providers_compare_judges_the_provider_on_provider_to_broker_only(
    stalled: ChdbStore,
) -> None:
    """On-time providers have an offset of ~0 and no clock flag, though alpha's origin → gate is
    STALL_S longer than its peers'; that time shows as the gate's queue."""
    # Skew judged to ON_TIME_NS: the providers' transit differs by milliseconds here (each
    # publishes through its own new producer), the gate's queue by seconds.
    compared = providers_compare(stalled, 3600 * S, skew_bound_ns=ON_TIME_NS)
    rows = {r["provider"]: r for r in compared["rows"]}
    assert set(rows) == {"alpha", "bravo", "charlie"}
    for r in rows.values():
        assert r["clock_offset_basis"] == "provider → broker"
        assert 0 <= r["clock_offset_ns"] < ON_TIME_NS
        assert 0 <= r["to_broker_p99_ns"] < ON_TIME_NS
        assert r["gate_queue_p50_ns"] >= SETTLE_S * S
        assert r["clock_flags"] == [], r["clock_flags"]
    # The embedded broker gives CreateTime: the provider's part ends on the producer's clock.
    assert {r["to_broker_clock"] for r in rows.values()} == {"CreateTime"}
    alpha = rows["alpha"]
    assert alpha["gate_queue_p50_ns"] >= (STALL_S + SETTLE_S) * S
    assert alpha["latency_p50_ns"] >= (STALL_S + SETTLE_S) * S  # end to end still shows it
    assert abs(alpha["clock_offset_vs_peers_ns"]) < ON_TIME_NS


def test_providers_compare_cli_shows_the_queue_apart_and_blames_no_provider(
    stalled: ChdbStore,
) -> None:
    """The table has the provider's part and the gate's queue as columns, and prints no
    clock-offset complaint about any provider."""
    result = CliRunner().invoke(
        app,
        ["providers", "compare", "--since", "1h", "--skew-bound", "300ms",
         "--store", str(stalled.path), "--database", stalled.database],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "to broker p99" in result.stdout
    assert "gate queue p99" in result.stdout
    assert "peers' median" not in result.stdout
    assert "! alpha" not in result.stdout
    assert "to broker for alpha, bravo, charlie: CreateTime: the producer's clock" in (
        result.stdout
    )


def test_hotspots_split_the_first_hop_at_the_broker(stalled: ChdbStore) -> None:
    """origin → kafka:<raw> is the provider's and short; kafka:<raw> → gate is the gate's
    queue and long; there is no origin → gate hop left to blame anyone."""
    (raw,) = {r["topic"] for r in stalled.query("SELECT DISTINCT topic FROM {db}.observations")}
    hops = {(r["from_stage"], r["to_stage"]): r for r in hotspots(stalled, 3600 * S)["rows"]}
    assert set(hops) == {("origin", f"kafka:{raw}"), (f"kafka:{raw}", "gate")}
    provider, queue = hops[("origin", f"kafka:{raw}")], hops[(f"kafka:{raw}", "gate")]
    assert provider["hops"] == queue["hops"] == 30
    assert provider["max_ns"] < ON_TIME_NS
    # whose clock the provider's part ends on (the embedded broker gives CreateTime); the
    # queue's hop is not the provider's and names none
    assert (provider["broker_clock"], queue["broker_clock"]) == ("CreateTime", None)
    assert queue["p50_ns"] >= SETTLE_S * S
    assert queue["max_ns"] >= (STALL_S + SETTLE_S) * S


def test_replay_names_the_queue_as_the_gates(stalled: ChdbStore) -> None:
    """An alpha record's replay: born → broker is the provider's (short), broker → the gate's
    intake is the queue (long)."""
    (row,) = stalled.query(
        "SELECT toString(event_id) AS id FROM {db}.observations "
        "WHERE provider = 'alpha' AND instrument = 'I00'"
    )
    by_stage = {s.stamp.stage: s for s in replay_event(stalled, row["id"]).sightings}
    broker = next(s for name, s in by_stage.items() if name.startswith("kafka:"))
    assert (broker.hop_from, broker.hop_owner) == ("origin", "provider")
    assert broker.hop_ns is not None
    assert broker.hop_ns < ON_TIME_NS
    ingest = by_stage["ingest"]
    assert (ingest.hop_from, ingest.hop_owner) == (broker.stamp.stage, "queue")
    assert ingest.hop_ns is not None
    assert ingest.hop_ns >= (STALL_S + SETTLE_S) * S
    assert by_stage["gate"].hop_owner == "hold"


def test_provider_latency_panel_shows_the_queue_apart(stalled: ChdbStore) -> None:
    """The Providers dashboard's latency panel, run on chDB: each provider's p99 to the broker
    is short, alpha's gate-queue p99 is long."""
    (span,) = stalled.query(
        "SELECT toUnixTimestamp(min(minute)) AS lo, toUnixTimestamp(max(minute)) AS hi"
        " FROM {db}.hop_latency_1m"
    )
    window = TimeRange(int(span["lo"]) * 1000, (int(span["hi"]) + 60) * 1000)
    sql = expand(LATENCY.sql.replace("{db}", stalled.database), window, {"provider": ALL})
    rows = stalled.query(sql)
    assert {r["provider"] for r in rows} == {"alpha", "bravo", "charlie"}
    for r in rows:
        assert r["to_broker_p99_ms"] < ON_TIME_NS / MS
    alpha = max(r["gate_queue_p99_ms"] for r in rows if r["provider"] == "alpha")
    assert alpha >= (STALL_S + SETTLE_S) * 1000
