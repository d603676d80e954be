"""Alert history and people's actions in the store (tables of migration 020).

Written through the store's query path, so the alerting component needs nothing of the store
but its public ``query``: rows travel as one base64 parameter holding JSONEachRow text
(base64, because parameters are read in ClickHouse's escaped text format, where JSON's own
backslashes and newlines would need a second escaping).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from alerting._notice import Notice
from audit import Store

_HISTORY_STRUCTURE = (
    "at Int64, alert_id String, kind String, state String, fingerprint String, "
    "severity String, labels Map(String, String), annotations Map(String, String), "
    "value Float64, started Int64, why String, source String"
)
_ACTION_STRUCTURE = (
    "at Int64, action String, alert_id String, fingerprint String, "
    "matchers Map(String, String), until Int64, by String, reason String, verdict String, "
    "silence_id String"
)


def _insert(
    store: Store, table: str, structure: str, select: str, rows: list[dict[str, Any]]
) -> None:
    if not rows:
        return
    text = b"\n".join(orjson.dumps(r) for r in rows)
    store.query(
        f"INSERT INTO {{db}}.{table} SELECT {select} "
        f"FROM format(JSONEachRow, '{structure}', base64Decode({{rows:String}}))",
        {"rows": base64.b64encode(text).decode("ascii")},
    )


def write_history(store: Store, notices: Sequence[Notice]) -> None:
    """Append one history row per transition.

    Raises:
        StoreError: the store refused the insert.
    """
    rows = []
    for n in notices:
        t = n.transition
        rows.append(
            {
                "at": t.at_ns,
                "alert_id": t.alert_id,
                "kind": t.kind,
                "state": t.state,
                "fingerprint": n.fingerprint,
                "severity": t.severity,
                "labels": n.labels,
                "annotations": n.annotations,
                "value": float(t.value),
                "started": t.started_ns,
                "why": t.why,
                "source": n.source,
            }
        )
    _insert(
        store,
        "alert_history",
        _HISTORY_STRUCTURE,
        "fromUnixTimestamp64Nano(at, 'UTC'), alert_id, kind, state, fingerprint, severity, "
        "labels, annotations, value, fromUnixTimestamp64Nano(started, 'UTC'), why, source, "
        "now64(3)",
        rows,
    )


def read_history(
    store: Store, since_ns: int = 0, limit: int = 1000, alert_id: str | None = None
) -> list[dict[str, Any]]:
    """Transitions at or after ``since_ns``, oldest first, at most ``limit``."""
    where = "at >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')"
    params: dict[str, Any] = {"since": since_ns, "limit": limit}
    if alert_id:
        where += " AND alert_id = {alert:String}"
        params["alert"] = alert_id
    return store.query(
        f"""SELECT toUnixTimestamp64Nano(at) AS at_ns, alert_id, kind, state, fingerprint,
               severity, labels, annotations, value, toUnixTimestamp64Nano(started) AS started_ns,
               why, source
            FROM {{db}}.alert_history FINAL WHERE {where}
            ORDER BY at, fingerprint, state LIMIT {{limit:UInt32}}""",
        params,
    )


def write_action(
    store: Store,
    *,
    at_ns: int,
    action: str,
    alert_id: str = "",
    fingerprint: str = "",
    matchers: Mapping[str, str] | None = None,
    until_ns: int = 0,
    by: str = "",
    reason: str = "",
    verdict: str = "",
    silence_id: str = "",
) -> None:
    """Record a snooze, unsnooze or dismissal: who, when, why, until.

    Raises:
        StoreError: the store refused the insert.
    """
    row = {
        "at": at_ns,
        "action": action,
        "alert_id": alert_id,
        "fingerprint": fingerprint,
        "matchers": dict(matchers or {}),
        "until": until_ns,
        "by": by,
        "reason": reason,
        "verdict": verdict,
        "silence_id": silence_id,
    }
    _insert(
        store,
        "alert_actions",
        _ACTION_STRUCTURE,
        "fromUnixTimestamp64Nano(at, 'UTC'), action, alert_id, fingerprint, matchers, "
        "fromUnixTimestamp64Nano(until, 'UTC'), by, reason, verdict, silence_id",
        [row],
    )


def read_actions(store: Store, since_ns: int = 0) -> list[dict[str, Any]]:
    """Every action at or after ``since_ns``, oldest first."""
    return store.query(
        """SELECT toUnixTimestamp64Nano(at) AS at_ns, action, alert_id, fingerprint, matchers,
               toUnixTimestamp64Nano(until) AS until_ns, by, reason, verdict, silence_id
            FROM {db}.alert_actions
            WHERE at >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') ORDER BY at""",
        {"since": since_ns},
    )
