"""The store contract on every backend: migrations, idempotent writes, ledger, rollups, queries."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from stampline.audit import (
    AUTHORITY_TAP,
    PREV_ORIGIN,
    Observation,
    Store,
    StoreError,
    completeness,
    hotspots,
    providers_compare,
)

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
HOUR = 3600 * 1_000_000_000

# The migration files shipped with the package, by name (NNN_name), in order.
SHIPPED_MIGRATIONS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "audit" / "sql").glob("[0-9][0-9][0-9]_*.sql")
)


def pipeline(
    n: int, *, provider: str = "alpha", hop_ns: int = 2 * MS, skip_last: int = 0, t0: int = T0
) -> list[Observation]:
    """``n`` events through gate → enrich → risk, each hop ``hop_ns``; the last ``skip_last``
    never reach risk."""
    rows = []
    for i in range(n):
        eid = str(uuid.uuid4())
        origin = t0 + i * 10 * MS
        prev, prev_out, prev_err = PREV_ORIGIN, origin, 0
        received = origin + hop_ns
        for j, stage in enumerate(("gate", "enrich", "risk")):
            if stage == "risk" and i >= n - skip_last:
                break
            rows.append(
                Observation(
                    eid,
                    stage,
                    received,
                    received + 1000,
                    origin,
                    origin + hop_ns,
                    1000,
                    provider=provider,
                    instrument=f"I{i % 3}",
                    seq=i,
                    outcome="forwarded" if j == 0 else "observed",
                    prev_stage=prev,
                    prev_emitted_ns=prev_out,
                    prev_clock_err_ns=prev_err,
                    price=100.0 + i % 3,
                )
            )
            prev, prev_out, prev_err = stage, received + 1000, 1000
            received += hop_ns
    return rows


def count(store: Store, table: str = "observations") -> int:
    return int(store.query(f"SELECT count() AS n FROM {{db}}.{table}")[0]["n"])


class TestMigrations:
    def test_migrating_again_applies_nothing(self, any_store: Store) -> None:
        """Opening the store applied every migration; migrating again changes nothing."""
        report = any_store.migrate()
        assert report.applied == []
        assert report.already == SHIPPED_MIGRATIONS
        versions = any_store.query("SELECT version FROM {db}.schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [int(m[:3]) for m in SHIPPED_MIGRATIONS]

    def test_an_edited_applied_migration_is_refused(self, any_store: Store) -> None:
        """A migration whose recorded checksum differs from the shipped file stops the migrate."""
        any_store._execute(
            f"INSERT INTO {any_store.database}.schema_migrations "
            "VALUES (2, 'ledger', 'not-the-checksum', now64(3))"
        )
        with pytest.raises(StoreError, match="002_ledger was changed after it was applied"):
            any_store.migrate()

    def test_the_tables_the_issue_names_exist(self, any_store: Store) -> None:
        """Trail, dead letters, alert state, ledger and both rollups are created."""
        names = {
            r["name"]
            for r in any_store.query(
                "SELECT name FROM system.tables WHERE database = {d:String}",
                {"d": any_store.database},
            )
        }
        assert {
            "observations",
            "dead_letters",
            "alert_state",
            "ledger",
            "hop_latency_1m",
            "provider_activity_1m",
            "trail",
        } <= names


class TestIdempotentWrites:
    def test_a_retried_batch_is_written_once(self, any_store: Store) -> None:
        """The same batch written three times leaves one copy of each row and one ledger entry."""
        batch = pipeline(40)
        for _ in range(3):
            any_store.write_observations(batch)
        assert count(any_store) == len(batch) == 120
        assert count(any_store, "ledger") == 1

    def test_a_retry_after_a_crash_before_the_ledger_write_adds_no_rows(
        self, any_store: Store
    ) -> None:
        """Rows written but not ledgered (a crash in between) are not duplicated by the retry."""
        batch = pipeline(10)
        any_store.write_observations(batch)
        any_store._execute(
            f"ALTER TABLE {any_store.database}.ledger DELETE WHERE 1 SETTINGS mutations_sync = 2"
        )
        any_store.write_observations(batch)
        assert count(any_store) == 30, "the insert's deduplication token dropped the retry"
        assert count(any_store, "ledger") == 1

    def test_a_retried_batch_is_counted_once_in_the_rollups(self, any_store: Store) -> None:
        """Materialized views see a retried batch once: hop counts equal the rows written."""
        batch = pipeline(25)
        any_store.write_observations(batch)
        any_store.write_observations(batch)
        (row,) = any_store.query("SELECT sum(hops) AS n FROM {db}.hop_latency_1m")
        assert row["n"] == 75

    def test_the_trail_view_prefers_the_stampers_row(self, any_store: Store) -> None:
        """A tap's reading of a stamp is kept as evidence, but readers see the stamper's row."""
        (gate, *_) = pipeline(1)
        tap = Observation(
            gate.event_id,
            "gate",
            gate.received_ns,
            gate.emitted_ns,
            gate.origin_ns,
            gate.ingested_ns,
            1000,
            topic="md.clean",
            authority=AUTHORITY_TAP,
        )
        any_store.write_observations([gate])
        any_store.write_observations([tap])
        assert count(any_store) == 2
        rows = any_store.query("SELECT topic, provider FROM {db}.trail")
        assert rows == [{"topic": "", "provider": "alpha"}]


class TestHopRollup:
    def test_each_hop_counts_once_as_hotspots_counts_it(self, any_store: Store) -> None:
        """The gate writes its own row of its stamp and a tap reads the same stamp from
        headers (the other stages are known only from the tap), and one record is
        dead-lettered: the hotspot panel's per-hop counts from the rollup are the true ones,
        and equal `hotspots`'s."""
        from stampline.dashboards import (
            ALL,
            TimeRange,
            expand,
        )
        from stampline.dashboards._hotspots import HOTSPOTS

        n = 40
        rows = pipeline(n)
        gate_rows = [r for r in rows if r.stage == "gate"]
        tap_readings = [replace(r, provider="", authority=AUTHORITY_TAP) for r in rows]
        (rejected, *_) = pipeline(1, t0=T0 + 5 * MS)
        rejected = replace(
            rejected, event_id=str(uuid.uuid4()), outcome="dead_lettered", rule_id="qty.max"
        )
        any_store.write_observations([*gate_rows, rejected])
        any_store.write_observations(tap_readings)
        truth = {("origin", "gate"): n, ("gate", "enrich"): n, ("enrich", "risk"): n}
        (both,) = any_store.query(
            "SELECT sum(hops) AS n FROM {db}.hop_latency_1m WHERE prev_stage = 'origin'"
        )
        assert both["n"] == 2 * n  # both copies are kept; readers choose
        cli = {
            (r["from_stage"], r["to_stage"]): r["hops"] for r in hotspots(any_store, HOUR)["rows"]
        }
        assert cli == truth
        (span,) = any_store.query(
            "SELECT toUnixTimestamp(min(minute)) AS lo, toUnixTimestamp(max(minute)) AS hi"
            " FROM {db}.hop_latency_1m"
        )
        window = TimeRange(int(span["lo"]) * 1000, (int(span["hi"]) + 60) * 1000)
        sql = expand(
            HOTSPOTS.sql.replace("{db}", any_store.database),
            window,
            {"provider": ALL, "stage": ALL},
        )
        panel = {(r["from_stage"], r["to_stage"]): r["hops"] for r in any_store.query(sql)}
        assert panel == truth


class TestStoredOffsets:
    @pytest.mark.parametrize(
        ("received", "emitted", "prev_emitted", "origin", "ingested", "broker_ms"),
        [
            (T0, T0 + 5, T0 - 7, T0 - 100, T0 - 50, T0 // MS - 1),
            (T0, T0, 0, 0, T0, 0),  # no previous stamp, no origin, no broker time
            (-(2**63) + 1, 2**63 - 1, 2**63 - 1, -(2**63), 2**63 - 1, -(2**40)),  # extremes
        ],
    )
    def test_stamps_stored_as_offsets_read_back_exactly(
        self,
        any_store: Store,
        received: int,
        emitted: int,
        prev_emitted: int,
        origin: int,
        ingested: int,
        broker_ms: int,
    ) -> None:
        """Times kept as offsets from received/origin read back bit-exact, extremes included."""
        row = Observation(
            str(uuid.uuid4()),
            "gate",
            received,
            emitted,
            origin,
            ingested,
            1000,
            broker_time_ms=broker_ms,
            prev_stage=PREV_ORIGIN,
            prev_emitted_ns=prev_emitted,
        )
        any_store.write_observations([row])
        (back,) = any_store.query(
            """SELECT toUnixTimestamp64Nano(received) AS r, toUnixTimestamp64Nano(emitted) AS e,
                      toUnixTimestamp64Nano(prev_emitted) AS p, toUnixTimestamp64Nano(origin) AS o,
                      toUnixTimestamp64Nano(ingested) AS i, toUnixTimestamp64Milli(broker_time) AS b
               FROM {db}.trail"""
        )
        assert back == {
            "r": received,
            "e": emitted,
            "p": prev_emitted,
            "o": origin,
            "i": ingested,
            "b": broker_ms,
        }
        assert any_store.verify().ok


class TestLedger:
    def _tampered(self, store: Store, sql: str) -> list[dict[str, object]]:
        store._execute(sql.replace("{db}", store.database) + " SETTINGS mutations_sync = 2")
        return [f.to_dict() for f in store.verify().findings]

    def _store_with_batches(self, store: Store) -> list[Observation]:
        first, second = pipeline(5, provider="alpha"), pipeline(5, provider="beta")
        store.write_observations(first)
        store.write_observations(second)
        return second

    def test_an_untouched_trail_verifies(self, any_store: Store) -> None:
        """Verification of an untouched trail finds nothing and counts every row."""
        self._store_with_batches(any_store)
        report = any_store.verify()
        assert report.ok
        assert (report.batches, report.rows) == (2, 30)

    def test_a_changed_value_is_reported_with_its_batch_and_column(self, any_store: Store) -> None:
        """Rewriting one row's provider is reported as a change to batch 2's provider column."""
        second = self._store_with_batches(any_store)
        findings = self._tampered(
            any_store,
            f"ALTER TABLE {{db}}.observations UPDATE provider = 'gamma' "
            f"WHERE event_id = '{second[0].event_id}' AND stage = 'gate'",
        )
        assert findings == [
            {
                "chain": "local",
                "kind": "observations",
                "batch": 2,
                "problem": "changed",
                "expected_rows": 15,
                "found_rows": 15,
                "changed_columns": ["provider"],
            }
        ]

    def test_a_changed_stored_offset_is_reported_under_its_stamp(self, any_store: Store) -> None:
        """A rewritten hop offset is reported as a change to prev_emitted, which it encodes."""
        second = self._store_with_batches(any_store)
        findings = self._tampered(
            any_store,
            f"ALTER TABLE {{db}}.observations UPDATE hop_ns = hop_ns - 1 "
            f"WHERE event_id = '{second[0].event_id}' AND stage = 'risk'",
        )
        assert [(f["batch"], f["problem"], f["changed_columns"]) for f in findings] == [
            (2, "changed", ["prev_emitted"])
        ]

    def test_a_deleted_row_is_reported(self, any_store: Store) -> None:
        """Deleting one row is reported as a deletion from its batch."""
        second = self._store_with_batches(any_store)
        findings = self._tampered(
            any_store,
            f"ALTER TABLE {{db}}.observations DELETE WHERE event_id = '{second[1].event_id}' "
            "AND stage = 'risk'",
        )
        assert [(f["batch"], f["problem"], f["found_rows"]) for f in findings] == [
            (2, "deleted", 14)
        ]

    def test_inserted_rows_are_reported(self, any_store: Store) -> None:
        """A row slipped into a ledgered batch, and one in no batch, are both reported."""
        self._store_with_batches(any_store)
        extra = f"'{uuid.uuid4()}'"
        any_store._execute(
            f"INSERT INTO {any_store.database}.observations (event_id, stage, batch, chain_id) "
            f"VALUES ({extra}, 'gate', 1, 'local'), ({extra}, 'risk', 99, 'local')"
        )
        findings = [f.to_dict() for f in any_store.verify().findings]
        assert [(f["batch"], f["problem"], f["found_rows"]) for f in findings] == [
            (1, "inserted", 16),
            (99, "unledgered", 1),
        ]

    def test_a_rewritten_ledger_entry_breaks_the_chain(self, any_store: Store) -> None:
        """Forging a batch's digest in the ledger is caught by the chain."""
        self._store_with_batches(any_store)
        findings = self._tampered(
            any_store,
            "ALTER TABLE {db}.ledger UPDATE digest = repeat('0', 64) WHERE seq = 1",
        )
        assert ("chain_broken", 1) in {(f["problem"], f["batch"]) for f in findings}


class TestRollupsAndQueries:
    def test_hop_latency_rollup_per_stage_pair(self, any_store: Store) -> None:
        """Each stage pair's hop quantiles, with the combined bound."""
        any_store.write_observations(pipeline(30, hop_ns=3 * MS))
        result = hotspots(any_store, HOUR)
        pairs = {(r["from_stage"], r["to_stage"]): r for r in result["rows"]}
        assert set(pairs) == {("origin", "gate"), ("gate", "enrich"), ("enrich", "risk")}
        hop = pairs[("gate", "enrich")]
        assert hop["hops"] == 30
        assert hop["p50_ns"] == pytest.approx(3 * MS - 1000)
        assert hop["clock_bound_ns"] == 2000
        assert hop["flags"] == []

    def test_a_latency_inside_the_clock_bound_is_flagged(self, any_store: Store) -> None:
        """Hops shorter than the combined clock-error bound are flagged, not shown as fact."""
        any_store.write_observations(pipeline(10, hop_ns=2500))  # 1.5 µs hops, 2 µs bound
        pairs = {(r["from_stage"], r["to_stage"]): r for r in hotspots(any_store, HOUR)["rows"]}
        hop = pairs[("enrich", "risk")]
        assert hop["within_bound"] == 10
        assert hop["flags"] == ["within the clock-error bound: not distinguishable from zero"]

    def test_a_negative_hop_is_flagged(self, any_store: Store) -> None:
        """A stage that received an event before the previous stage emitted it is flagged."""
        any_store.write_observations(pipeline(10, hop_ns=500))  # received before emitted
        pairs = {(r["from_stage"], r["to_stage"]): r for r in hotspots(any_store, HOUR)["rows"]}
        assert pairs[("gate", "enrich")]["negative"] == 10
        assert pairs[("gate", "enrich")]["flags"][0].startswith("negative")

    def test_completeness_counts_lost_and_duplicated_events(self, any_store: Store) -> None:
        """Events that never reached risk are lost; one seen twice at enrich is duplicated."""
        rows = pipeline(20, skip_last=3, t0=T0)
        any_store.write_observations(rows)
        enrich = next(r for r in rows if r.stage == "enrich")
        again = Observation(
            enrich.event_id,
            "enrich",
            enrich.received_ns + 5 * MS,
            enrich.emitted_ns + 5 * MS,
            enrich.origin_ns,
            enrich.ingested_ns,
            1000,
            prev_stage="gate",
            prev_emitted_ns=enrich.prev_emitted_ns,
        )
        # A later event settles the window so the three missing ones are past the grace.
        any_store.write_observations([again, *pipeline(1, provider="beta", t0=T0 + 60 * 10**9)])
        result = {
            (r["from_stage"], r["to_stage"], r["provider"]): r
            for r in completeness(any_store, HOUR, key=("provider",))["rows"]
        }
        assert (
            result[("enrich", "risk", None)]["lost"],
            result[("enrich", "risk", None)]["duplicated"],
        ) == (3, 0)
        assert result[("gate", "enrich", None)]["duplicated"] == 1
        assert result[("gate", "enrich", None)]["lost"] == 0
        assert result[("origin", "gate", "alpha")]["lost"] == 0

    def test_a_gap_in_provider_sequence_is_lost_before_the_gate(self, any_store: Store) -> None:
        """Sequence numbers missing at the gate count as lost between origin and gate."""
        rows = [r for r in pipeline(10) if r.seq not in (3, 4)]
        any_store.write_observations(rows)
        # pipeline() numbers per provider, across instruments
        result = completeness(any_store, HOUR, key=("provider",))
        (row,) = [r for r in result["rows"] if r["from_stage"] == "origin"]
        assert (row["upstream"], row["lost"]) == (10, 2)
        (gap,) = result["sequence_gaps"]
        assert (gap["key"], gap["first_missing"], gap["size"]) == ({"provider": "alpha"}, 3, 2)

    def test_unreadable_records_are_counted_beside_the_sequence_gaps(
        self, any_store: Store
    ) -> None:
        """First-stage sightings with no readable provider are reported, not silently lost."""
        rows = pipeline(10)
        gate = next(r for r in rows if r.stage == "gate" and r.seq == 3)
        unreadable = replace(
            gate, event_id=str(uuid.uuid4()), provider="", seq=-1, outcome="dead_lettered"
        )
        any_store.write_observations([r for r in rows if r.seq != 3] + [unreadable])
        result = completeness(any_store, HOUR, key=("provider",))
        (row,) = [r for r in result["rows"] if r["from_stage"] == "origin"]
        assert (row["lost"], result["unattributed"]) == (1, 1)

    def test_providers_compare_reports_every_figure(self, any_store: Store) -> None:
        """Latency ± bound, gaps, rate, dead-letter share and divergence, per provider."""
        alpha = pipeline(20, provider="alpha")
        beta = [
            Observation(
                **{
                    **{f: getattr(r, f) for f in r.__slots__},
                    "price": r.price * 1.01,
                    "event_id": str(uuid.uuid5(uuid.NAMESPACE_OID, r.event_id)),
                }
            )
            for r in pipeline(20, provider="beta")
            if r.stage == "gate"
        ]
        dead = Observation(
            str(uuid.uuid4()),
            "gate",
            T0,
            T0,
            T0,
            T0,
            1000,
            provider="beta",
            outcome="dead_lettered",
            rule_id="price.positive",
            prev_stage=PREV_ORIGIN,
            prev_emitted_ns=T0,
            price=math.nan,
        )
        any_store.write_observations([*alpha, *beta, dead])
        result = providers_compare(any_store, HOUR, gap_ns=5 * MS)
        rows = {r["provider"]: r for r in result["rows"]}
        assert rows["alpha"]["events"] == 20
        assert rows["alpha"]["latency_p50_ns"] == pytest.approx(2 * MS)
        assert rows["alpha"]["clock_bound_ns"] == 1000
        assert rows["alpha"]["silences"] == 19  # 10 ms apart, threshold 5 ms
        assert rows["alpha"]["silence_total_ns"] == 19 * 10 * MS
        assert rows["alpha"]["silence_longest_ns"] == 10 * MS
        assert rows["alpha"]["updates_per_s"] == pytest.approx(19 / 0.19)
        assert rows["beta"]["dead_lettered_share"] == pytest.approx(1 / 21)
        # two providers, 1 % apart: each is ~0.5 % (about 50 bps) from their median
        assert rows["alpha"]["divergence_bps_max"] == pytest.approx(49.75, abs=0.1)
        by_instrument = providers_compare(any_store, HOUR, by="instrument")
        assert {(r["provider"], r["instrument"]) for r in by_instrument["rows"]} >= {
            ("alpha", "I0"),
            ("beta", "I2"),
        }
