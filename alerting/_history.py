"""Alert history and people's actions in the store (tables of migrations 020 and 021), and
their records on the alerts topic.

Written through the store's query path, so the alerting component needs nothing of the store
but its public ``query``: rows travel as one base64 parameter holding JSONEachRow text
(base64, because parameters are read in ClickHouse's escaped text format, where JSON's own
backslashes and newlines would need a second escaping).

On the alerts topic every record is one JSON object: a transition (``Notice.to_json``,
``"type": "transition"``; a record without ``type`` is read as one) or a person's action
(:func:`action_record`, ``"type": "action"``). The recorder writes both into the store,
each row naming the message it came from (``src`` = ``<topic>/<partition>``, ``src_offset``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from stampline.alerting._notice import Notice
from stampline.audit import Store

_HISTORY_STRUCTURE = (
    "at Int64, alert_id String, kind String, state String, fingerprint String, "
    "severity String, labels Map(String, String), annotations Map(String, String), "
    "value Float64, started Int64, why String, source String, src String, src_offset Int64"
)
_HISTORY_COLUMNS = (
    "at, alert_id, kind, state, fingerprint, severity, labels, annotations, value, started, "
    "why, source, src, src_offset"
)
_HISTORY_SELECT = (
    "fromUnixTimestamp64Nano(at, 'UTC'), alert_id, kind, state, fingerprint, severity, "
    "labels, annotations, value, fromUnixTimestamp64Nano(started, 'UTC'), why, source, src, "
    "src_offset"
)
_ACTION_STRUCTURE = (
    "at Int64, action String, alert_id String, fingerprint String, "
    "matchers Map(String, String), until Int64, by String, reason String, verdict String, "
    "silence_id String, src String, src_offset Int64"
)
_ACTION_COLUMNS = (
    "at, action, alert_id, fingerprint, matchers, until, by, reason, verdict, silence_id, src, "
    "src_offset"
)
_ACTION_SELECT = (
    "fromUnixTimestamp64Nano(at, 'UTC'), action, alert_id, fingerprint, matchers, "
    "fromUnixTimestamp64Nano(until, 'UTC'), by, reason, verdict, silence_id, src, src_offset"
)
ACTIONS = ("snooze", "unsnooze", "dismiss")
VERDICTS = ("", "expected", "false_positive", "fixed")


def _insert(
    store: Store, table: str, columns: str, structure: str, select: str,
    rows: Sequence[Mapping[str, Any]],
) -> None:  # fmt: skip
    if not rows:
        return
    text = b"\n".join(orjson.dumps(r) for r in rows)
    store.query(
        f"INSERT INTO {{db}}.{table} ({columns}) SELECT {select} "
        f"FROM format(JSONEachRow, '{structure}', base64Decode({{rows:String}}))",
        {"rows": base64.b64encode(text).decode("ascii")},
    )


def history_row(notice: Notice) -> dict[str, Any]:
    """The ``alert_history`` row of a transition (before its source is known)."""
    t = notice.transition
    return {
        "at": t.at_ns,
        "alert_id": t.alert_id,
        "kind": t.kind,
        "state": t.state,
        "fingerprint": notice.fingerprint,
        "severity": t.severity,
        "labels": notice.labels,
        "annotations": notice.annotations,
        "value": float(t.value),
        "started": t.started_ns,
        "why": t.why,
        "source": notice.source,
        "src": "",
        "src_offset": -1,
    }


def action_record(
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
) -> dict[str, Any]:
    """A person's action as the alerts topic carries it (``"type": "action"``).

    Raises:
        ValueError: an unknown action or verdict.
    """
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS[1:])}")
    return {
        "type": "action",
        "at_ns": at_ns,
        "action": action,
        "alert_id": alert_id,
        "fingerprint": fingerprint,
        "matchers": dict(matchers or {}),
        "until_ns": until_ns,
        "by": by,
        "reason": reason,
        "verdict": verdict,
        "silence_id": silence_id,
    }


def _int(obj: Mapping[str, Any], key: str, default: int | None = None) -> int:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key}: {v!r} is not an integer")
    return v


def _str(obj: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = obj.get(key, default)
    if not isinstance(v, str):
        raise ValueError(f"{key}: {v!r} is not a string")
    return v


def _strmap(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    v = obj.get(key, {})
    if not isinstance(v, dict) or not all(isinstance(x, str) for kv in v.items() for x in kv):
        raise ValueError(f"{key}: {v!r} is not a map of strings")
    return v


def read_record(value: bytes | None) -> tuple[str, dict[str, Any]]:
    """An alerts-topic record as ``("history" | "actions", row)``, the row ready for
    :func:`write_rows` (its ``src``/``src_offset`` still unset).

    Raises:
        ValueError: not JSON, not an object, an unknown type, or a field missing or of the
            wrong type (named).
    """
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (got {type(obj).__name__})")
    kind = obj.get("type", "transition")
    if kind == "transition":
        state = _str(obj, "state")
        if state not in ("pending", "firing", "resolved"):
            raise ValueError(f"state: {state!r} is not pending, firing or resolved")
        value_ = obj.get("value", 0.0)
        if isinstance(value_, bool) or not isinstance(value_, int | float):
            raise ValueError(f"value: {value_!r} is not a number")
        return "history", {
            "at": _int(obj, "at_ns"),
            "alert_id": _str(obj, "alert_id"),
            "kind": _str(obj, "kind"),
            "state": state,
            "fingerprint": _str(obj, "fingerprint"),
            "severity": _str(obj, "severity"),
            "labels": _strmap(obj, "labels"),
            "annotations": _strmap(obj, "annotations"),
            "value": float(value_),
            "started": _int(obj, "started_ns"),
            "why": _str(obj, "why", ""),
            "source": _str(obj, "source", ""),
        }
    if kind == "action":
        action = _str(obj, "action")
        verdict = _str(obj, "verdict", "")
        action_record(at_ns=0, action=action, verdict=verdict)  # validates both
        return "actions", {
            "at": _int(obj, "at_ns"),
            "action": action,
            "alert_id": _str(obj, "alert_id", ""),
            "fingerprint": _str(obj, "fingerprint", ""),
            "matchers": _strmap(obj, "matchers"),
            "until": _int(obj, "until_ns", 0),
            "by": _str(obj, "by", ""),
            "reason": _str(obj, "reason", ""),
            "verdict": verdict,
            "silence_id": _str(obj, "silence_id", ""),
        }
    raise ValueError(f"type: {kind!r} is neither transition nor action")


def write_rows(store: Store, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert rows of :func:`read_record` (each with ``src`` and ``src_offset``) into
    ``alert_history`` (``table="history"``) or ``alert_actions`` (``"actions"``), in one
    insert.

    Raises:
        StoreError: the store refused the insert.
    """
    if table == "history":
        _insert(store, "alert_history", _HISTORY_COLUMNS, _HISTORY_STRUCTURE, _HISTORY_SELECT, rows)
    else:
        _insert(store, "alert_actions", _ACTION_COLUMNS, _ACTION_STRUCTURE, _ACTION_SELECT, rows)


def written_offsets(store: Store, src: str) -> dict[str, int]:
    """Per table (``history``, ``actions``), the last ``src_offset`` written from ``src``
    (-1 when none): what a re-read of that alerts partition must skip."""
    out = {}
    for name, table in (("history", "alert_history"), ("actions", "alert_actions")):
        (row,) = store.query(
            f"SELECT count() AS n, max(src_offset) AS o FROM {{db}}.{table} "
            "WHERE src = {src:String}",
            {"src": src},
        )
        out[name] = int(row["o"]) if int(row["n"]) else -1
    return out


def write_history(store: Store, notices: Sequence[Notice]) -> None:
    """Append one history row per transition.

    Raises:
        StoreError: the store refused the insert.
    """
    write_rows(store, "history", [history_row(n) for n in notices])


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
    record = action_record(
        at_ns=at_ns, action=action, alert_id=alert_id, fingerprint=fingerprint,
        matchers=matchers, until_ns=until_ns, by=by, reason=reason, verdict=verdict,
        silence_id=silence_id,
    )  # fmt: skip
    _kind, row = read_record(orjson.dumps(record))
    write_rows(store, "actions", [{**row, "src": "", "src_offset": -1}])


def read_actions(store: Store, since_ns: int = 0) -> list[dict[str, Any]]:
    """Every action at or after ``since_ns``, oldest first."""
    return store.query(
        """SELECT toUnixTimestamp64Nano(at) AS at_ns, action, alert_id, fingerprint, matchers,
               toUnixTimestamp64Nano(until) AS until_ns, by, reason, verdict, silence_id
            FROM {db}.alert_actions
            WHERE at >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') ORDER BY at""",
        {"since": since_ns},
    )


def last_states(
    store: Store, alert_ids: Sequence[str], limit: int = 100_000
) -> dict[str, tuple[str, int]]:
    """Per fingerprint of ``alert_ids``, the last transition the history holds: (state, at_ns)
    — what was notified of each instance, at most ``limit`` instances (the newest)."""
    if not alert_ids:
        return {}
    rows = store.query(
        """SELECT fingerprint,
               argMax(state, (at, indexOf(['pending', 'firing', 'resolved'], state))) AS state,
               toUnixTimestamp64Nano(max(at)) AS at_ns
            FROM {db}.alert_history FINAL
            WHERE alert_id IN {ids:Array(String)}
            GROUP BY fingerprint ORDER BY at_ns DESC LIMIT {limit:UInt32}""",
        {"ids": list(alert_ids), "limit": limit},
    )
    return {r["fingerprint"]: (r["state"], int(r["at_ns"])) for r in rows}
