"""Files for the tools people already run, generated from the same definitions:

- :func:`prometheus_rules`: Prometheus alerting rules equivalent to the definitions, for
  teams that alert from Prometheus; :func:`prometheus_tests`: ``promtool test rules`` unit
  tests for them (synthetic series that must fire and must not).
- :func:`alertmanager_config`: routing (``group_by``), an inhibition of provider alerts while
  a collector is down, and ``time_intervals`` per venue from the calendars.

Kinds and their expressions (metric names are the sidecars' and the watch's):

- ``provider_silent``: seconds since the newest origin of each registered provider over
  every gate (``max by (provider, venue)``, the scale-out aggregation point), above its
  ``max_gap``, while its venue is in session.
- ``dlq_rate``: dead letters per provider and rule over all records of the provider.
- ``latency_slo``: the stage's hold-time quantile over the window.
- ``trail_lag``: a sidecar's consumer lag in records.
- ``collector_down``: ``up == 0`` for the sidecars' scrape job.
- ``sequence_gap``, ``stale``, ``divergence``: judged in-stream by the gates; the rule
  re-publishes ``stampline_alert_firing`` for teams that route everything via Prometheus.
- ``completeness``: judged by the recorder (it sees every stage); re-published the same way,
  per provider, venue and stage pair.
- ``clock_error``: the clock-error bound each sidecar reports (read at start and re-read
  while it runs, from its configuration or chrony) above the RTS 25 tier's limit.

The PromQL is built once per definition (:func:`signal`: the value, its threshold, the
session it is judged in) and the routing constants are shared: ``dashboards`` renders
Grafana-managed rules and policies from the same parts, so the two cannot drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from stampline._common import SECOND_NS, prometheus_duration
from stampline.alerting._definitions import (
    AlertDefinition,
    AlertsFile,
    Calendar,
    ClockError,
    CollectorDown,
    DlqRate,
    LatencySlo,
    ProviderSilent,
    TrailLag,
    Window,
)
from stampline.alerting._summary import Summary, exported_summary

NOT_EXPORTED: tuple[str, ...] = ()  # every kind has a metric now
IN_STREAM = ("sequence_gap", "stale", "divergence", "completeness")
# Provider-level kinds: inhibited while a collector is down (a dead collector makes providers
# look silent, and a dead tap or stage makes the events after it look lost), and routed by
# venue.
PROVIDER_KINDS = (
    "provider_silent",
    "sequence_gap",
    "stale",
    "divergence",
    "dlq_rate",
    "completeness",
)
# How notifications are grouped and timed, for Alertmanager and Grafana's policy tree alike.
GROUP_BY = ("alertname", "provider", "venue")
ROUTE_TIMING = {
    "group_wait": "0s",  # a silent provider must reach people within a second
    "group_interval": "30s",
    "repeat_interval": "4h",
}
_WEEKDAYS = {
    "mon": "monday",
    "tue": "tuesday",
    "wed": "wednesday",
    "thu": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "sun": "sunday",
}
_DAY_ORDER = list(_WEEKDAYS)


def _matcher(name: str, patterns: tuple[str, ...]) -> str:
    if not patterns:
        return ""
    regex = "|".join(re.escape(p).replace(r"\*", ".*").replace(r"\?", ".") for p in patterns)
    return f'{name}=~"{regex}"'


def _selector(*parts: str) -> str:
    inner = ",".join(p for p in parts if p)
    return "{" + inner + "}" if inner else ""


@dataclass(frozen=True, slots=True)
class PromSignal:
    """One definition's PromQL in the parts both renderers use, so they cannot drift.

    Prometheus compares them in one expression (:func:`expression`):
    ``value op threshold [and on (by) (session == 1)]``. Grafana (``dashboards``) queries
    ``value`` per instance and judges it with a threshold expression; where the threshold
    is per instance (``threshold_vector``) or a session applies, it queries the difference
    instead, so every instance stays a series whatever its state.
    """

    value: str  # the measured value per instance: what a summary's value shows
    op: Literal[">", "=="]
    by: tuple[str, ...]  # the labels that tell instances apart
    threshold: float | None = None  # a number...
    threshold_vector: str | None = None  # ...or one per instance, matched on `by`
    session: str | None = None  # 1 while the instance's venue trades, else 0

    def promql(self) -> str:
        """The Prometheus alerting expression."""
        on = f"on ({', '.join(self.by)}) "
        vector = self.threshold_vector
        limit = f"{self.threshold:g}" if vector is None else on + vector
        expr = f"{self.value} {self.op} {limit}"
        if self.session is not None:
            expr += f" and {on}({self.session} == 1)"
        return expr


def signal(d: AlertDefinition) -> PromSignal | None:
    """The PromQL parts of one definition, or None for the kinds that have no metric yet."""
    providers = _matcher("provider", d.scope.providers)
    venues = _matcher("venue", d.scope.venues)
    if isinstance(d, ProviderSilent):
        sel = _selector(providers, venues)
        by = "max by (provider, venue)"
        pv = ("provider", "venue")
        gap = f"{by} (stampline_provider_expected_max_gap_seconds{sel})"
        return PromSignal(
            value=f"(time() - {by} (stampline_provider_last_event_origin_timestamp_seconds{sel}))",
            op=">",
            by=pv,
            threshold=None if d.threshold_ns is None else d.threshold_ns / SECOND_NS,
            threshold_vector=gap if d.threshold_ns is None else None,
            session=f"{by} (stampline_provider_in_session{sel})",
        )
    if isinstance(d, DlqRate):
        w = prometheus_duration(d.window_ns)
        sel = _selector(providers)
        return PromSignal(
            value=(
                f"sum by (provider, reason) (rate(stampline_events_dead_lettered_total{sel}[{w}]))"
                f" / on (provider) group_left sum by (provider)"
                f" (rate(stampline_events_in_total{sel}[{w}]))"
            ),
            op=">",
            by=("provider", "reason"),
            threshold=d.threshold,
        )
    if isinstance(d, LatencySlo):
        w = prometheus_duration(d.window_ns)
        stage = f'stage="{d.scope.stage}"' if d.scope.stage else ""
        sel = _selector(stage, providers)
        return PromSignal(
            value=(
                f"histogram_quantile({d.quantile:g}, sum by (le, stage, provider)"
                f" (rate(stampline_stage_latency_seconds_bucket{sel}[{w}])))"
            ),
            op=">",
            by=("stage", "provider"),
            threshold=d.threshold_ns / SECOND_NS,
        )
    if isinstance(d, TrailLag):
        return PromSignal(
            "max by (topic, partition) (stampline_consumer_lag)",
            ">",
            ("topic", "partition"),
            threshold=d.threshold,
        )
    if isinstance(d, CollectorDown):
        return PromSignal(f'up{{job="{d.job}"}}', "==", ("job", "instance"), threshold=0)
    if isinstance(d, ClockError):
        return PromSignal(
            "max by (host, stage) (stampline_clock_error_bound_seconds)",
            ">",
            ("host", "stage"),
            threshold=d.limit_ns / SECOND_NS,
        )
    if d.kind in IN_STREAM:
        keep = ("provider", "venue", *(("instrument",) if d.scope.instrument else ()))
        if d.kind == "completeness":
            keep += ("from_stage", "to_stage")
        sel = _selector(f'alertname="{d.id}"', providers, venues)
        return PromSignal(
            f"max by ({', '.join(keep)}) (stampline_alert_firing{sel})", ">", keep, threshold=0
        )
    return None


def expression(d: AlertDefinition) -> str | None:
    """The PromQL of one definition, or None for the kinds that have no metric yet."""
    s = signal(d)
    return None if s is None else s.promql()


def summary_template(d: AlertDefinition, value: str = "$value") -> str:
    """``d``'s summary (its own, else the kind's default) in the Go template language
    Prometheus and Grafana share (``_summary`` says what each placeholder becomes); ``value``
    is how the template names the value (Prometheus ``$value``; Grafana
    ``$values.<refId>.Value``)."""
    return _summary(d).go(value)


def summary_notes(d: AlertDefinition) -> tuple[str, ...]:
    """What of ``d``'s summary the exported rule shows as written (a placeholder it has no
    value for), one sentence naming the alert id; empty when it renders in full."""
    return _summary(d).notes(d.id)


def _summary(d: AlertDefinition) -> Summary:
    s = signal(d)
    return exported_summary(d, s.by if s is not None else (), has_value=d.kind not in IN_STREAM)


def _rule(d: AlertDefinition) -> dict[str, Any] | None:
    expr = expression(d)
    if expr is None:
        return None
    rule: dict[str, Any] = {"alert": d.id, "expr": expr}
    if d.for_ns:
        rule["for"] = prometheus_duration(d.for_ns)
    if d.keep_firing_for_ns:
        rule["keep_firing_for"] = prometheus_duration(d.keep_firing_for_ns)
    rule["labels"] = {"severity": d.severity, "kind": d.kind}
    annotations = {"summary": summary_template(d)}
    for name in ("description", "runbook_url", "dashboard_url"):
        if getattr(d, name):
            annotations[name] = getattr(d, name)
    rule["annotations"] = annotations
    return rule


def prometheus_rules(definitions: AlertsFile, group: str = "stampline") -> str:
    """A Prometheus rule file (YAML) with one alerting rule per exportable definition."""
    rules = [r for r in (_rule(d) for d in definitions.alerts) if r is not None]
    skipped = [d.id for d in definitions.alerts if d.kind in NOT_EXPORTED]
    header = "# Generated by `stampline alerts export prometheus` from the alert definitions.\n"
    if skipped:
        header += f"# Not exported (no metric to evaluate yet): {', '.join(skipped)}\n"
    for d in definitions.alerts:
        if d.kind not in NOT_EXPORTED:
            header += "".join(f"# Note: {n}\n" for n in summary_notes(d))
    body = {"groups": [{"name": group, "interval": "15s", "rules": rules}]}
    return header + yaml.safe_dump(body, sort_keys=False, width=200)


def prometheus_tests(definitions: AlertsFile, rule_file: str, group: str = "stampline") -> str:
    """``promtool test rules`` unit tests: for each exported rule with a synthetic case,
    series that must fire it (with its labels and annotations) and a time it must not."""
    tests = []
    for d in definitions.alerts:
        case = _case(d, definitions)
        if case is not None:
            tests.append(case)
    body = {
        "rule_files": [rule_file],
        "evaluation_interval": "15s",
        "group_eval_order": [group],
        "tests": tests,
    }
    return "# Generated by `stampline alerts export prometheus`.\n" + yaml.safe_dump(
        body, sort_keys=False, width=200
    )


def _annotations(d: AlertDefinition, labels: dict[str, str], value: float) -> dict[str, str]:
    rule = _rule(d)
    assert rule is not None
    out = {}
    for k, v in rule["annotations"].items():
        if k == "summary":
            out[k] = _summary(d).expand(labels, value)
            continue
        text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), v)
        text = text.replace('{{ $value | printf "%.1f" }}', f"{value:.1f}")
        text = text.replace("{{ $value | humanizePercentage }}", f"{value * 100:g}%")
        out[k] = text
    return out


def _case(d: AlertDefinition, definitions: AlertsFile) -> dict[str, Any] | None:
    for_s = d.for_ns // SECOND_NS
    base = {"alertname": d.id, "severity": d.severity, "kind": d.kind}
    if isinstance(d, ProviderSilent):
        p = next((p for p in definitions.providers if d.scope.matches(p.provider, p.venue)), None)
        provider, venue = (p.provider, p.venue) if p else ("example", "XEXA")
        gap_s = (
            d.threshold_ns
            if d.threshold_ns is not None
            else (p.max_gap_ns if p else 60 * SECOND_NS)
        ) / SECOND_NS
        ident = f'{{provider="{provider}",venue="{venue}"}}'
        # Events until 60 s, then none: silent from 60 s on.
        fire_at = _ceil15(60 + gap_s + for_s + 1)
        steps = fire_at // 15 + 4
        labels = {**base, "provider": provider, "venue": venue}
        return {
            "interval": "15s",
            "input_series": [
                {
                    "series": f"stampline_provider_last_event_origin_timestamp_seconds{ident}",
                    "values": f"0+15x4 60+0x{steps}",
                },
                {
                    "series": f"stampline_provider_expected_max_gap_seconds{ident}",
                    "values": f"{gap_s:g}+0x{steps + 4}",
                },
                {"series": f"stampline_provider_in_session{ident}", "values": f"1+0x{steps + 4}"},
            ],
            "alert_rule_test": [
                {"eval_time": "45s", "alertname": d.id, "exp_alerts": []},
                {
                    "eval_time": f"{fire_at}s",
                    "alertname": d.id,
                    "exp_alerts": [
                        {
                            "exp_labels": labels,
                            "exp_annotations": _annotations(d, labels, fire_at - 60),
                        }
                    ],
                },
            ],
        }
    if isinstance(d, CollectorDown):
        labels = {**base, "job": d.job, "instance": "gate-1:9464"}
        fire_at = _ceil15(30 + for_s + 1)
        return {
            "interval": "15s",
            "input_series": [
                {
                    "series": f'up{{job="{d.job}",instance="gate-1:9464"}}',
                    "values": f"1 1 0+0x{fire_at // 15 + 4}",
                }
            ],
            "alert_rule_test": [
                {"eval_time": "15s", "alertname": d.id, "exp_alerts": []},
                {
                    "eval_time": f"{fire_at}s",
                    "alertname": d.id,
                    "exp_alerts": [
                        {"exp_labels": labels, "exp_annotations": _annotations(d, labels, 0)}
                    ],
                },
            ],
        }
    if isinstance(d, ClockError):
        labels = {**base, "host": "gate-1", "stage": "gate"}
        bound = d.limit_ns / SECOND_NS * 2
        fire_at = _ceil15(for_s + 15)
        return {
            "interval": "15s",
            "input_series": [
                {
                    "series": 'stampline_clock_error_bound_seconds{host="gate-1",stage="gate"}',
                    "values": f"{bound:g}+0x{fire_at // 15 + 4}",
                }
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{fire_at}s",
                    "alertname": d.id,
                    "exp_alerts": [
                        {"exp_labels": labels, "exp_annotations": _annotations(d, labels, bound)}
                    ],
                }
            ],
        }
    if isinstance(d, DlqRate) and not d.scope.providers:
        # 100 records and 50 dead letters every 15 s: half dead-lettered.
        fire_at = _ceil15(d.window_ns / SECOND_NS + for_s + 15)
        n = fire_at // 15 + 4
        labels = {**base, "provider": "example", "reason": "price.positive"}
        return {
            "interval": "15s",
            "input_series": [
                {"series": 'stampline_events_in_total{provider="example"}', "values": f"0+100x{n}"},
                {
                    "series": "stampline_events_dead_lettered_total"
                    '{provider="example",reason="price.positive"}',
                    "values": f"0+50x{n}",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": f"{fire_at}s",
                    "alertname": d.id,
                    "exp_alerts": [
                        {"exp_labels": labels, "exp_annotations": _annotations(d, labels, 0.5)}
                    ],
                }
            ],
        }
    return None


def _ceil15(seconds: float) -> int:
    return int(-(-seconds // 15) * 15)


def _intervals(window: Window) -> list[dict[str, Any]]:
    start, end = window.start, window.end
    days = [_WEEKDAYS[d] for d in window.days]
    if window.minutes()[0] <= window.minutes()[1]:
        return [{"weekdays": days, "times": [{"start_time": start, "end_time": end}]}]
    # Past midnight: the evening on the listed days, the morning on the days after them.
    after = [_WEEKDAYS[_DAY_ORDER[(_DAY_ORDER.index(d) + 1) % 7]] for d in window.days]
    return [
        {"weekdays": days, "times": [{"start_time": start, "end_time": "24:00"}]},
        {"weekdays": after, "times": [{"start_time": "00:00", "end_time": end}]},
    ]


def session_interval(name: str, cal: Calendar) -> dict[str, Any]:
    """Calendar ``name``'s sessions as a named time interval (Alertmanager's
    ``time_intervals`` entry; Grafana's mute timing has the same shape), each range with the
    calendar's ``location``; overnight sessions are split at midnight."""
    entries = []
    for w in cal.sessions:
        for e in _intervals(w):
            e["location"] = cal.timezone
            entries.append(e)
    return {"name": f"{name}-session", "time_intervals": entries}


def session_intervals(definitions: AlertsFile) -> list[dict[str, Any]]:
    """Every calendar's sessions as a time interval, by calendar name."""
    return [session_interval(n, c) for n, c in sorted(definitions.calendars.items())]


def venue_sessions(definitions: AlertsFile) -> dict[str, str]:
    """Venue → the name of the time interval its alerts are routed in (the first registered
    provider of the venue with a calendar decides), sorted by venue."""
    by_venue: dict[str, str] = {}
    for p in definitions.providers:
        if p.calendar and p.venue:
            by_venue.setdefault(p.venue, f"{p.calendar}-session")
    return dict(sorted(by_venue.items()))


def alertmanager_config(definitions: AlertsFile, receiver: str = "stampline") -> str:
    """An Alertmanager configuration: routing, inhibition, and market-hours intervals.

    Provider alerts of a venue are routed only inside its sessions (``active_time_intervals``);
    provider-level alerts are inhibited while any ``collector_down`` alert fires (a dead
    collector makes every provider look silent). Replace the empty receiver with yours.
    """
    down = [d.id for d in definitions.alerts if d.kind == "collector_down"]
    provider_kinds = "|".join(PROVIDER_KINDS)
    intervals = session_intervals(definitions)
    routes = [
        {"receiver": receiver, "matchers": [f'venue="{venue}"'], "active_time_intervals": [name]}
        for venue, name in venue_sessions(definitions).items()
    ]
    config: dict[str, Any] = {
        "route": {
            "receiver": receiver,
            "group_by": list(GROUP_BY),
            **ROUTE_TIMING,
            "routes": routes,
        },
        "receivers": [{"name": receiver}],
    }
    if down:
        config["inhibit_rules"] = [
            {
                "source_matchers": [f'alertname=~"{"|".join(re.escape(i) for i in down)}"'],
                "target_matchers": [f'kind=~"{provider_kinds}"'],
            }
        ]
    if intervals:
        config["time_intervals"] = intervals
    head = "# Generated by `stampline alerts export alertmanager` from the alert definitions.\n"
    return head + yaml.safe_dump(config, sort_keys=False, width=200)
