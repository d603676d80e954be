"""The bound's source on every trail row: stored, digested by the ledger, read back by replay."""

from __future__ import annotations

import uuid

from stampline.audit import (
    ChdbStore,
    ClockBound,
    Observation,
    replay_event,
    short_ids,
)

T0 = 1_700_000_000_000_000_000
FALLBACK = ClockBound(1_000_000, "fallback", reason="chronyc not found").label()


def _row(eid: str, source: str, **kw: object) -> Observation:
    return Observation(
        eid, "gate", T0 + 5_000, T0 + 6_000, T0, T0 + 5_000, 1_000_000, host="gw",
        clock_source=source, outcome="forwarded", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_replay_shows_each_stamps_bound_source(store: ChdbStore) -> None:
    """A stamp written with a fallback source replays with that source, in JSON too."""
    eid = str(uuid.uuid4())
    store.write_observations([_row(eid, FALLBACK, warnings=("price.tick@v1",))])
    t = replay_event(store, eid)
    gate = next(s for s in t.events[0].stamps if s.stage == "gate")
    assert gate.clock_source == FALLBACK
    assert t.events[0].warnings == ("price.tick@v1",)
    as_json = t.to_dict()["events"][0]["stamps"]
    assert {s["stage"]: s.get("clock_source") for s in as_json}["gate"] == FALLBACK


def test_a_changed_bound_source_is_caught_by_verify(store: ChdbStore) -> None:
    """Rewriting a row's clock_source breaks its batch's digest, and verify names the column."""
    store.write_observations([_row(str(uuid.uuid4()), "configured")])
    store._execute(
        f"ALTER TABLE {store.database}.observations UPDATE clock_source = 'chrony' WHERE 1 "
        "SETTINGS mutations_sync = 2"
    )
    (finding,) = store.verify().findings
    assert (finding.problem, finding.columns) == ("changed", ("clock_source",))


def test_short_ids_tell_time_ordered_ids_apart() -> None:
    """Ids sharing their first 8 characters and even their last 8 get labels from the
    shortest tail that tells them apart."""
    ids = [
        "01a21a59-0aa1-8795-a770-c306b1314d78",
        "01a21a59-0aa3-8620-bf3b-f1a711223344",
        "01a21a59-0aa3-8620-bf3b-f1a811223344",
    ]
    assert short_ids(ids) == {
        ids[0]: "…6b1314d78",
        ids[1]: "…711223344",
        ids[2]: "…811223344",
    }
    assert short_ids(ids[:1]) == {ids[0]: "…b1314d78"}


def test_a_dead_lettered_event_without_origin_has_no_delta_from_origin(store: ChdbStore) -> None:
    """An event too broken to carry an origin shows no Δ origin, and Δ first still moves."""
    eid = str(uuid.uuid4())
    store.write_observations(
        [
            Observation(
                eid, "gate", T0 + 5_000, T0 + 9_000, 0, T0 + 5_000, 1_000, host="gw",
                broker_time_ms=(T0 + 7_000_000) // 1_000_000, topic="md.raw",
                outcome="dead_lettered", rule_id="decode", rule_version=1,
            )
        ]
    )  # fmt: skip
    t = replay_event(store, eid)
    assert {s.delta_from_origin_ns for s in t.sightings} == {None}
    assert [s.delta_from_first_ns for s in t.sightings] == [0, 4_000, 7_000_000 - 5_000]


def test_replay_table_names_events_by_their_tails_and_shows_the_bound_source(
    store: ChdbStore,
) -> None:
    """`stampline replay --decision` labels same-prefix ids by distinct tails, prints each
    stamp's bound source, warns about the fallback host, and shows — for a missing origin."""
    from typer.testing import CliRunner

    from stampline.cli import app

    parent = "01a21a59-0aa1-8795-a770-c306b1314d78"
    decision = "01a21a59-0aa3-8620-bf3b-f1a711223344"
    store.write_observations(
        [
            _row(parent, FALLBACK),
            Observation(
                decision, "risk", T0 + 9_000, T0 + 9_500, 0, T0 + 9_000, 2_000, host="r1",
                parents=(parent,), clock_source="configured",
            ),
        ]
    )  # fmt: skip
    result = CliRunner().invoke(
        app, ["replay", "--decision", decision, "--store", str(store.path),
              "--database", store.database],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "…b1314d78" in result.stdout
    assert "…11223344" in result.stdout
    assert "01a21a59 " not in result.stdout
    assert "fallback: chronyc not found" in result.stdout
    assert "configured" in result.stdout
    assert "bound on gw is the configured value" in result.stdout
    risk_line = next(line for line in result.stdout.splitlines() if "risk" in line)
    assert "—" in risk_line  # the decision has no origin: no Δ origin
