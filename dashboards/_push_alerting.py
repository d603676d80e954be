"""Push alerting sections (Grafana's file-provisioning format) through the provisioning API.

A section's document is what ``export`` writes to ``alerting/<name>.yaml``; here each part is
turned into the HTTP API's shape and written only when it differs from what Grafana holds:

=================  ==================================================================
file key           API
=================  ==================================================================
``contactPoints``  ``GET|POST /api/v1/provisioning/contact-points``, ``PUT .../{uid}``
``muteTimes``      ``GET|POST /api/v1/provisioning/mute-timings``, ``PUT .../{name}``
``policies``       ``GET|PUT /api/v1/provisioning/policies`` (the whole tree)
``groups``         ``GET|PUT /api/v1/provisioning/folder/{uid}/rule-groups/{group}``
                   (in the folder ``ALERTS_FOLDER_UID``, which ``push`` creates first)
=================  ==================================================================

"Differs" compares only what we send: Grafana adds ids, timestamps and defaults, and
redacts secrets (``[REDACTED]``), none of which is a change of ours. A rule's
``keepFiringFor`` is the API's ``keep_firing_for``, sent to Grafana 12 and later only: 11
drops it, so it would read back as a difference on every push.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from grafana_client.api import GrafanaApi

from stampline.dashboards._provisioning import ALERTS_FOLDER_TITLE, ALERTS_FOLDER_UID
from stampline.dashboards.exceptions import PushError

Call = Callable[..., Any]
REDACTED = "[REDACTED]"
_DURATION = re.compile(r"^(\d+)([smh])$")
# A rule's file key -> its key in the API. The file's dashboardUid/panelId are not sent: over
# the API the __dashboardUid__/__panelId__ annotations say the same.
_RULE_KEYS = {
    "uid": "uid",
    "title": "title",
    "condition": "condition",
    "data": "data",
    "noDataState": "noDataState",
    "execErrState": "execErrState",
    "for": "for",
    "keepFiringFor": "keep_firing_for",  # snake case in the API (Grafana 12+)
    "annotations": "annotations",
    "labels": "labels",
    "isPaused": "isPaused",
}
KEEP_FIRING_FOR_SINCE = 12  # Grafana 11 ignores keep_firing_for (and would never read it back)


def covers(have: Any, want: Any) -> bool:
    """Whether ``have`` (what Grafana returned) holds everything in ``want`` (what we send)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and covers(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(covers(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have in (want, REDACTED))


def _seconds(value: Any, where: str) -> int:
    if isinstance(value, int):
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise PushError(f"{where}: interval {value!r} is not a duration like 1m or 30s")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def push_alerting(
    api: GrafanaApi,
    document: dict[str, Any],
    section: str,
    call: Call,
    dry_run: bool,
    grafana_major: int = KEEP_FIRING_FOR_SINCE,
) -> list[tuple[str, str, str]]:
    """Push one section to a Grafana of major version ``grafana_major``; returns (kind, name,
    action) per object."""
    changes: list[tuple[str, str, str]] = []
    for cp in document.get("contactPoints", []):
        for receiver in cp.get("receivers", []):
            body = {k: v for k, v in receiver.items() if k != "orgId"} | {"name": cp["name"]}
            changes.append(_contact_point(api, body, call, dry_run))
    for mt in document.get("muteTimes", []):
        body = {k: v for k, v in mt.items() if k != "orgId"}
        changes.append(_mute_timing(api, body, call, dry_run))
    for tree in document.get("policies", []):
        body = {k: v for k, v in tree.items() if k != "orgId"}
        changes.append(_policies(api, body, call, dry_run))
    changes.extend(
        _rule_group(api, group, section, call, dry_run, grafana_major)
        for group in document.get("groups", [])
    )
    return changes


def _contact_point(
    api: GrafanaApi, body: dict[str, Any], call: Call, dry_run: bool
) -> tuple[str, str, str]:
    uid = body.get("uid")
    if not uid:
        raise PushError(f"contact point {body.get('name')!r}: every receiver needs a uid")
    ap = api.alertingprovisioning
    have = next(
        (c for c in call("read contact points", ap.get_contactpoints) if c.get("uid") == uid),
        None,
    )
    if have is not None and covers(have, body):
        return ("contact_point", uid, "unchanged")
    if not dry_run:
        if have is None:
            call(f"create contact point {uid}", lambda: ap.create_contactpoint(body))
        else:
            call(f"update contact point {uid}", lambda: ap.update_contactpoint(uid, body))
    return ("contact_point", uid, "create" if have is None else "update")


def _mute_timing(
    api: GrafanaApi, body: dict[str, Any], call: Call, dry_run: bool
) -> tuple[str, str, str]:
    name = body.get("name")
    if not name:
        raise PushError("a mute timing needs a name")
    ap = api.alertingprovisioning
    have = call(f"read mute timing {name}", lambda: ap.get_mute_timing(name), missing_ok=True)
    if have is not None and covers(have, body):
        return ("mute_timing", name, "unchanged")
    if not dry_run:
        if have is None:
            call(f"create mute timing {name}", lambda: ap.create_mute_timing(body))
        else:
            call(f"update mute timing {name}", lambda: ap.update_mute_timing(name, body))
    return ("mute_timing", name, "create" if have is None else "update")


def _policies(
    api: GrafanaApi, body: dict[str, Any], call: Call, dry_run: bool
) -> tuple[str, str, str]:
    ap = api.alertingprovisioning
    have = call("read the notification policy tree", ap.get_notification_policy_tree)
    if covers(have, body):
        return ("policies", "tree", "unchanged")
    if not dry_run:
        call(
            "set the notification policy tree",
            lambda: ap.set_notification_policy_tree(body),
        )
    return ("policies", "tree", "update")


def _rule_group(
    api: GrafanaApi,
    group: dict[str, Any],
    section: str,
    call: Call,
    dry_run: bool,
    grafana_major: int,
) -> tuple[str, str, str]:
    name = group.get("name")
    where = f"alerting section {section!r}, group {name!r}"
    if not name:
        raise PushError(f"alerting section {section!r}: a rule group needs a name")
    if group.get("folder", ALERTS_FOLDER_TITLE) != ALERTS_FOLDER_TITLE:
        raise PushError(f"{where}: rules live in the {ALERTS_FOLDER_TITLE!r} folder")
    rules = []
    for rule in group.get("rules", []):
        if not rule.get("uid"):
            raise PushError(f"{where}: every rule needs a uid (it is how a push finds it again)")
        body = {api_key: rule[k] for k, api_key in _RULE_KEYS.items() if k in rule}
        if grafana_major < KEEP_FIRING_FOR_SINCE:
            body.pop("keep_firing_for", None)
        rules.append(body | {"folderUID": ALERTS_FOLDER_UID, "ruleGroup": name, "orgID": 1})
    body = {
        "title": name,
        "interval": _seconds(group.get("interval", "1m"), where),
        "rules": rules,
    }
    ap = api.alertingprovisioning
    have = call(
        f"read rule group {name}",
        lambda: ap.get_rule_group(ALERTS_FOLDER_UID, name),
        missing_ok=True,
    )
    if have is not None and covers(have, body):
        return ("rule_group", name, "unchanged")
    if not dry_run:
        call(f"save rule group {name}", lambda: ap.update_rule_group(ALERTS_FOLDER_UID, name, body))
    return ("rule_group", name, "create" if have is None else "update")
