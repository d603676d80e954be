"""Grafana-managed alerting rendered from the alerting component's definitions.

:func:`grafana_alerting` turns an ``alerting.AlertsFile`` into two alerting provisioning
sections (``export`` writes each to ``alerting/<name>.yaml``, ``push`` sends them through the
provisioning API):

- ``stampline-rules``: one multi-dimensional rule per definition (one instance per provider,
  host, stage...), in the folder *Stampline alerts* (see ``ALERTS_FOLDER_TITLE``), in two
  groups: ``providers`` evaluated every 10 s (a silent provider must
  reach people within seconds) and ``pipeline`` every 30 s (its metrics are scraped every
  15 s; evaluating faster adds nothing).
- ``stampline-notifications``: the venue calendars' sessions as mute timings (Grafana's
  name for named time intervals), and, when an Alertmanager URL is known, a contact point
  sending to it and the policy tree (grouping and timing as the Alertmanager snippet of
  ``stampline alerts export alertmanager``; each venue's alerts routed only inside its
  sessions).

Every rule queries Prometheus with the PromQL the exported Prometheus rules use
(``alerting.signal``): the value per instance is query ``A``. Where the threshold is one per
instance (a provider's ``max_gap``) or a session applies, query ``B`` is the value minus its
threshold, times "in session": every instance stays a series in every state, so a provider
that is silent fires and a closed market reads 0, where a filtering expression would drop the
series and Grafana would resolve it as a missing series (grafana#130902, #76920). The
``provider_silent`` series come from the provider watch, which exports them for *every
registered* provider, seen or not (one never seen counts from the watch's start). Condition
``C`` is a threshold expression on ``A`` or ``B``, with Grafana's recovery threshold for the
definitions' ``clear``. Queries are instant: their results are already one number per
instance, so no reduce step is needed.

``noDataState`` (what an evaluation that returns no series at all means), the group, the
panel and the command to investigate with are the kind's (``alerting.KINDS``, each kind's
``grafana``); ``execErrState`` is ``Error`` everywhere: a query that fails (Prometheus
unreachable) becomes Grafana's DatasourceError alert naming the rule, never a claim that a
provider is silent. Each rule carries ``severity``, ``kind`` and ``stampline_dashboard``
labels and is annotated with its summary (the definition's own, else the kind's: the
exported Prometheus rule's text, ``alerting.summary_template``, with ``$values.A.Value``; a
placeholder shown as written there is a note here), its dashboard and panel
(``__dashboardUid__``, ``__panelId__``) and the command to investigate with.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from stampline._common import mask_urls
from stampline.alerting import (
    GROUP_BY,
    KINDS,
    ROUTE_TIMING,
    AlertDefinition,
    AlertsFile,
    PromSignal,
    prometheus_duration,
    session_intervals,
    signal,
    summary_notes,
    summary_template,
    venue_sessions,
)
from stampline.dashboards._common import PROMETHEUS, PROMETHEUS_UID
from stampline.dashboards._provisioning import (
    ALERTS_FOLDER_TITLE,
    AlertingSection,
    GrafanaSettings,
    dashboards,
)
from stampline.dashboards._secret_refs import alertmanager_settings
from stampline.dashboards.exceptions import GrafanaError

RULES_SECTION = "stampline-rules"
NOTIFICATIONS_SECTION = "stampline-notifications"
CONTACT_POINT = "stampline-alertmanager"  # the contact point's name and its receiver's uid
EXPR_UID = "__expr__"  # Grafana's server-side expressions
UID_PREFIX = "stampline-"
MAX_UID = 40  # Grafana's limit; characters [A-Za-z0-9_-]
QUERY_WINDOW_S = 600  # relativeTimeRange of the instant queries (the rate windows are in PromQL)
EXEC_ERR_STATE = "Error"

# (group, evaluation interval): Grafana's intervals are multiples of 10 s. Each kind names
# its group (a silent provider must reach people within seconds; pipeline metrics are
# scraped every 15 s, so evaluating them faster adds nothing).
GROUPS: tuple[tuple[str, str], ...] = (("providers", "10s"), ("pipeline", "30s"))
# What "no series at all" means, per kind (each kind's module says why).
NO_DATA: dict[str, str] = {name: k.grafana.no_data for name, k in KINDS.items()}

# Grafana 11 has the threshold types gt, lt, within_range and outside_range (eq, gte, lte
# came later, grafana#99516), so the others are written with these.


def _evaluator(s: PromSignal, threshold: float) -> dict[str, Any]:
    if s.op == ">":
        return {"type": "gt", "params": [threshold]}
    # `==` is only `up == 0` (collector_down), and `up` is 0 or 1.
    assert s.op == "==", s
    assert s.value.startswith("up{"), s
    assert threshold == 0, s
    return {"type": "lt", "params": [1]}


def _at_or_below(value: float) -> dict[str, Any]:
    """A recovery threshold that clears at or below ``value`` (the watch's hysteresis)."""
    return {"type": "lt", "params": [math.nextafter(value, math.inf)]}


@dataclass(frozen=True, slots=True)
class RuleGroups:
    """The rule groups, as one alerting provisioning file."""

    groups: tuple[dict[str, Any], ...]
    comment: str = ""  # written above the file's content
    name: str = RULES_SECTION

    def document(self, settings: GrafanaSettings) -> dict[str, Any]:
        return {"apiVersion": 1, "groups": copy.deepcopy(list(self.groups))}


@dataclass(frozen=True, slots=True)
class Notifications:
    """Contact point, mute timings and the policy tree, as one alerting provisioning file."""

    contact_points: tuple[dict[str, Any], ...] = ()
    mute_times: tuple[dict[str, Any], ...] = ()
    policies: tuple[dict[str, Any], ...] = ()
    comment: str = ""
    name: str = NOTIFICATIONS_SECTION
    # Variable name -> value of the secrets the contact point references (never written).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def document(self, settings: GrafanaSettings) -> dict[str, Any]:
        doc: dict[str, Any] = {"apiVersion": 1}
        for key, value in (
            ("contactPoints", self.contact_points),
            ("muteTimes", self.mute_times),
            ("policies", self.policies),
        ):
            if value:
                doc[key] = copy.deepcopy(list(value))
        return doc


@dataclass(frozen=True, slots=True)
class GrafanaAlerting:
    """What :func:`grafana_alerting` rendered, and what it left out and why."""

    sections: tuple[AlertingSection, ...]
    rules: int
    skipped: tuple[str, ...] = ()  # "<id> (<kind>): why", a definition without a rule
    notes: tuple[str, ...] = ()  # a rule rendered with a difference worth knowing
    routed: bool = False  # contact point and policy tree included

    def summary(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "sections": [s.name for s in self.sections],
            "routed": self.routed,
            "skipped": list(self.skipped),
            "notes": list(self.notes),
        }


def rule_uid(alert_id: str) -> str:
    """A stable Grafana uid for an alert id: ``stampline-`` and the id with dots as dashes
    (ids never hold a dash, so this is one-to-one); a longer one keeps its start and a hash
    of the whole id to fit Grafana's 40 characters."""
    uid = UID_PREFIX + alert_id.replace(".", "-")
    if len(uid) <= MAX_UID:
        return uid
    digest = hashlib.sha256(alert_id.encode()).hexdigest()[:8]
    return uid[: MAX_UID - len(digest) - 1] + "-" + digest


def grafana_alerting(
    definitions: AlertsFile, *, alertmanager_url: str | None = None
) -> GrafanaAlerting:
    """The Grafana alerting sections for ``definitions``.

    ``alertmanager_url`` (as Grafana reaches it) adds the contact point and the policy tree;
    without it the file holds the mute timings only and notification routing stays Grafana's.

    Raises:
        GrafanaError: two alert ids map to one Grafana uid, or a panel an alert points at is
            missing from the dashboards (a renamed panel).
    """
    panels = _panel_ids()
    by_group: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in GROUPS}
    skipped: list[str] = []
    notes: list[str] = []
    uids: dict[str, str] = {}
    for d in definitions.alerts:
        rendered = _rule(d, definitions, panels, notes)
        if isinstance(rendered, str):
            skipped.append(f"{d.id} ({d.kind}): {rendered}")
            continue
        if rendered["uid"] in uids:
            raise GrafanaError(
                f"alerts {uids[rendered['uid']]!r} and {d.id!r} map to one Grafana uid "
                f"{rendered['uid']!r}; rename one"
            )
        uids[rendered["uid"]] = d.id
        by_group[KINDS[d.kind].grafana.group].append(rendered)
    groups: tuple[dict[str, Any], ...] = tuple(
        {
            "orgId": 1,
            "name": name,
            "folder": ALERTS_FOLDER_TITLE,
            "interval": interval,
            "rules": rules,
        }
        for name, interval in GROUPS
        if (rules := by_group[name])
    )
    comment = "".join(f"Not rendered: {s}\n" for s in skipped) + "".join(
        f"Note: {n}\n" for n in notes
    )
    sections: list[AlertingSection] = []
    if groups:
        sections.append(RuleGroups(groups, comment))
    notifications = _notifications(definitions, alertmanager_url)
    if notifications.mute_times or notifications.contact_points:
        sections.append(notifications)
    return GrafanaAlerting(
        tuple(sections),
        sum(len(g["rules"]) for g in groups),
        tuple(skipped),
        tuple(notes),
        routed=bool(notifications.policies),
    )


def _panel_ids() -> dict[tuple[str, str], int]:
    # Panel ids are assigned by position when a dashboard is built (`_common.to_dict`).
    return {
        (uid, p["title"]): p["id"] for uid, dash in dashboards().items() for p in dash["panels"]
    }


def _prometheus(ref: str, expr: str) -> dict[str, Any]:
    return {
        "refId": ref,
        "relativeTimeRange": {"from": QUERY_WINDOW_S, "to": 0},
        "datasourceUid": PROMETHEUS_UID,
        "model": {
            "refId": ref,
            "datasource": PROMETHEUS.to_json(),
            "editorMode": "code",
            "expr": expr,
            "instant": True,
            "range": False,
            "intervalMs": 1000,
            "maxDataPoints": 43200,
        },
    }


def _threshold(ref: str, of: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref,
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": EXPR_UID,
        "model": {
            "refId": ref,
            "datasource": {"type": EXPR_UID, "uid": EXPR_UID},
            "type": "threshold",
            "expression": of,
            "conditions": [condition],
        },
    }


def _condition(
    d: AlertDefinition, s: PromSignal, definitions: AlertsFile, notes: list[str]
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(the input of the threshold, its condition, the queries it needs beyond ``A``)."""
    if s.threshold_vector is None and s.session is None:
        assert s.threshold is not None
        condition: dict[str, Any] = {"evaluator": _evaluator(s, s.threshold)}
        clear = getattr(d, "clear", None)
        if clear is not None:  # dlq_rate: clears at or below `clear` (hysteresis)
            condition["unloadEvaluator"] = _at_or_below(clear)
        return "A", condition, []
    # The excess over the threshold, 0 outside the session: a series per instance always.
    on = f"on ({', '.join(s.by)}) "
    limit = f"{s.threshold:g}" if s.threshold_vector is None else on + s.threshold_vector
    excess = f"{s.value} - {limit}"
    if s.session is not None:
        excess = f"({excess}) * {on}{s.session}"
    condition = {"evaluator": _evaluator(s, 0)}
    clear_ns = getattr(d, "clear_ns", None)
    registered = KINDS[d.kind].registered
    if clear_ns is not None and registered is not None:
        thresholds = set(registered(d, definitions))
        if len(thresholds) == 1:
            (t,) = thresholds
            # As the watch: active above the threshold, clear at or below min(clear, it).
            condition["unloadEvaluator"] = _at_or_below((min(clear_ns, t) - t) / 1e9)
        else:
            notes.append(
                f"{d.id}: `clear` not rendered: Grafana's recovery threshold is one number "
                "per rule and the providers in scope have different max_gap"
            )
    return "B", condition, [_prometheus("B", excess)]


def _rule(
    d: AlertDefinition,
    definitions: AlertsFile,
    panels: dict[tuple[str, str], int],
    notes: list[str],
) -> dict[str, Any] | str:
    """The rule for ``d``, or why there is none."""
    kind = KINDS[d.kind]
    registered = kind.registered
    if registered is not None and not registered(d, definitions):
        return "no registered provider in its scope (its query would return nothing)"
    s = signal(d)
    of, condition, extra = _condition(d, s, definitions, notes)
    dashboard, title = kind.grafana.panel
    if (dashboard, title) not in panels:
        raise GrafanaError(f"alert {d.id}: dashboard {dashboard} has no panel {title!r}")
    panel = panels[(dashboard, title)]
    notes.extend(summary_notes(d))
    annotations = {
        "summary": summary_template(d, "$values.A.Value"),
        "investigate": kind.grafana.investigate(d, definitions),
        "__dashboardUid__": dashboard,
        "__panelId__": str(panel),
    }
    for name in ("description", "runbook_url", "dashboard_url"):
        if getattr(d, name):
            annotations[name] = getattr(d, name)
    rule: dict[str, Any] = {
        "uid": rule_uid(d.id),
        "title": d.id,
        "condition": "C",
        "data": [_prometheus("A", s.value), *extra, _threshold("C", of, condition)],
        "dashboardUid": dashboard,
        "panelId": panel,
        "noDataState": kind.grafana.no_data,
        "execErrState": EXEC_ERR_STATE,
        "for": prometheus_duration(d.for_ns),
    }
    if d.keep_firing_for_ns:
        rule["keepFiringFor"] = prometheus_duration(d.keep_firing_for_ns)
    rule["annotations"] = annotations
    rule["labels"] = {"severity": d.severity, "kind": d.kind, "stampline_dashboard": dashboard}
    rule["isPaused"] = False
    return rule


def _notifications(definitions: AlertsFile, alertmanager_url: str | None) -> Notifications:
    mute_times = tuple({"orgId": 1, **t} for t in session_intervals(definitions))
    if alertmanager_url is None:
        return Notifications(mute_times=mute_times)
    if not re.match(r"^https?://\S+$", alertmanager_url):
        raise GrafanaError(
            f"Alertmanager URL {mask_urls(alertmanager_url)!r} must be http(s)://..."
        )
    settings, secrets = alertmanager_settings(alertmanager_url)
    contact = {
        "orgId": 1,
        "name": CONTACT_POINT,
        "receivers": [
            {
                "uid": CONTACT_POINT,
                "type": "prometheus-alertmanager",
                "settings": settings,
                "disableResolveMessage": False,
            }
        ],
    }
    routes = [
        {
            "receiver": CONTACT_POINT,
            "object_matchers": [["venue", "=", venue]],
            "active_time_intervals": [interval],
        }
        for venue, interval in venue_sessions(definitions).items()
    ]
    policy: dict[str, Any] = {
        "orgId": 1,
        "receiver": CONTACT_POINT,
        "group_by": list(GROUP_BY),
        **ROUTE_TIMING,
    }
    if routes:
        policy["routes"] = routes
    comment = "".join(
        f"Grafana reads ${name} from its environment: set it where Grafana runs.\n"
        for name in sorted(secrets)
    )
    return Notifications((contact,), mute_times, (policy,), comment, secrets=secrets)
