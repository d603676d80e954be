"""Replay: one event's sightings, or a decision's whole lineage, in time order."""

from __future__ import annotations

import uuid

import pytest

from stampline.audit import (
    AUTHORITY_TAP,
    ChdbStore,
    NotFoundError,
    Observation,
    format_ns,
    replay_decision,
    replay_event,
)

T0 = 1_700_000_000_000_000_000


def _event(store: ChdbStore, origin: int, provider: str, topic: str = "md.raw") -> str:
    eid = str(uuid.uuid4())
    store.write_observations(
        [
            Observation(
                eid,
                "gate",
                origin + 5_000,
                origin + 7_000,
                origin,
                origin + 5_000,
                1_000,
                topic=topic,
                offset=3,
                broker_time_ms=(origin + 1_000_000) // 1_000_000,
                provider=provider,
                outcome="forwarded",
            )
        ]
    )
    return eid


def _decision(store: ChdbStore, parents: list[str], received: int, emitted: int) -> str:
    eid = str(uuid.uuid4())
    store.write_observations(
        [
            Observation(
                eid,
                "risk",
                received,
                emitted,
                emitted,
                emitted,
                2_000,
                topic="decisions",
                parents=tuple(parents),
                authority=AUTHORITY_TAP,
            )
        ]
    )
    return eid


def test_replay_event_lists_its_stamps_in_time_order(store: ChdbStore) -> None:
    """An event's replay holds origin, broker, ingest and stage stamps, sorted by time."""
    eid = _event(store, T0, "alpha")
    t = replay_event(store, eid)
    assert t.kind == "event"
    assert t.root_id == eid
    (e,) = t.events
    assert [(s.stage, s.time_ns) for s in e.stamps] == [
        ("origin", T0),
        ("ingest", T0 + 5_000),
        ("gate", T0 + 7_000),
        ("kafka:md.raw", T0 + 1_000_000),
    ]
    assert e.stamps[2].received_ns == T0 + 5_000
    assert [s.delta_from_origin_ns for s in t.sightings] == [0, 5_000, 7_000, 1_000_000]


def test_replay_decision_expands_lineage_recursively(store: ChdbStore) -> None:
    """A decision made from another decision replays down to the provider events at the root."""
    a = _event(store, T0, "alpha")
    b = _event(store, T0 + 10_000, "bravo")
    first = _decision(store, [a, b], T0 + 20_000, T0 + 30_000)
    c = _event(store, T0 + 40_000, "charlie")
    final = _decision(store, [first, c], T0 + 50_000, T0 + 60_000)
    t = replay_decision(store, final)
    roles = {e.event_id: (e.role, e.depth) for e in t.events}
    assert roles == {
        final: ("decision", 0),
        first: ("input", 1),
        c: ("input", 1),
        a: ("input", 2),
        b: ("input", 2),
    }
    times = [s.stamp.time_ns for s in t.sightings]
    assert times == sorted(times)
    assert t.sightings[0].event_id == a
    assert t.sightings[0].delta_from_first_ns == 0
    assert t.sightings[-1].delta_from_first_ns == t.sightings[-1].stamp.time_ns - T0
    as_json = t.to_dict()
    assert as_json["id"] == final
    assert {e["event_id"] for e in as_json["events"]} == set(roles)
    for e in as_json["events"]:
        stamp_times = [s["time_ns"] for s in e["stamps"]]
        assert stamp_times == sorted(stamp_times)


def test_unseen_parent_is_listed_not_hidden(store: ChdbStore) -> None:
    """A parent the trail never saw appears with no stamps, so a gap in the evidence shows."""
    ghost = str(uuid.uuid4())
    d = _decision(store, [ghost], T0, T0 + 1)
    t = replay_decision(store, d)
    (missing,) = [e for e in t.events if e.event_id == ghost]
    assert missing.stamps == ()
    assert missing.outcome == "unseen"


def test_lineage_cycles_terminate(store: ChdbStore) -> None:
    """Corrupt lineage that loops back on itself still replays, each event once."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    store.write_observations(
        [
            Observation(a, "risk", T0, T0 + 1, T0, T0, 0, parents=(b,)),
            Observation(b, "risk", T0 + 2, T0 + 3, T0 + 2, T0 + 2, 0, parents=(a,)),
        ]
    )
    t = replay_decision(store, a)
    assert sorted(e.event_id for e in t.events) == sorted([a, b])


def test_unknown_event_raises_not_found(store: ChdbStore) -> None:
    """Replaying an id the trail never saw says so."""
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=missing):
        replay_event(store, missing)
    with pytest.raises(NotFoundError, match="decision"):
        replay_decision(store, missing)


@pytest.mark.parametrize("bad", ["", "abc", "1' OR '1'='1", "g" * 32, "e" * 100_000])
def test_malformed_ids_are_refused_before_querying(store: ChdbStore, bad: str) -> None:
    """Anything that is not a UUID is refused with a message naming it (an endless one cut
    to its first 200 characters and its length)."""
    with pytest.raises(ValueError, match="not a UUID") as info:
        replay_event(store, bad)
    assert len(str(info.value)) < 300


def test_ids_are_accepted_in_any_case_and_without_hyphens(store: ChdbStore) -> None:
    """An id pasted upper-case or as 32 hex digits finds the same event."""
    eid = _event(store, T0, "alpha")
    assert replay_event(store, eid.upper().replace("-", "")).root_id == eid


def test_format_ns_keeps_all_nine_digits() -> None:
    """Times print with nanoseconds, which datetime alone would truncate."""
    assert format_ns(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
