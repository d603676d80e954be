"""`stampline alerts ...`: check definitions, list the history, export Prometheus and
Alertmanager files, run the provider watch, snooze / unsnooze / dismiss.

People's actions are recorded in the store. While a recorder holds an embedded store (it
serves it read-only), an action goes to the alerts topic instead, and the recorder (the
store's one writer) writes it; the command waits a little to see it written.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.table import Table

from stampline._alerts import alertmanager_client
from stampline.alerting import (
    AlertDeliveryError,
    AlertmanagerClient,
    AlertsFile,
    DefinitionError,
    action_record,
    alertmanager_config,
    duration_ns,
    load_alerts,
    prometheus_rules,
    prometheus_tests,
    read_actions,
    read_history,
    suggest,
    summary_notes,
    write_action,
)
from stampline.audit import AuditError, LiveStore, Store
from stampline.cli._app import (
    ConfigOpt,
    DatabaseOpt,
    JsonOpt,
    StoreOpt,
    app,
    config_path,
    emit_json,
    err,
    fail,
    open_store_for_query,
    out,
)
from stampline.config import ConfigError, load_config

alerts_app = typer.Typer(
    help="Alerts: check definitions, list history, export rules, snooze and dismiss.\n\n"
    "Reference: docs/alerting.md.",
    no_args_is_help=True,
)
export_app = typer.Typer(help="Write Prometheus or Alertmanager files.", no_args_is_help=True)
alerts_app.add_typer(export_app, name="export")
app.add_typer(alerts_app, name="alerts")

DefsOpt = Annotated[
    Path | None,
    typer.Option("--definitions", "-d", help="Alert definitions YAML (default: the config's)."),
]
AmOpt = Annotated[
    str | None,
    typer.Option("--alertmanager", help="Alertmanager URL (default: the config's)."),
]


def _definitions(definitions: Path | None, config: Path | None) -> AlertsFile:
    if definitions is None:
        if config is None and not os.environ.get("STAMPLINE_CONFIG"):
            fail("say which definitions: --definitions FILE or --config FILE", 2)
        try:
            cfg = load_config(config_path(config))
        except ConfigError as exc:
            fail(str(exc))
        if cfg.alerting.definitions is None:
            fail("the configuration has no alerting.definitions", 2)
        definitions = cfg.alerting.definitions
    try:
        return load_alerts(definitions)
    except DefinitionError as exc:
        fail(f"alert definitions are not usable:\n{exc!s}")


def _am(url: str | None, config: Path | None) -> AlertmanagerClient:
    if url is not None:
        return AlertmanagerClient(url)
    try:
        client = alertmanager_client(load_config(config_path(config)))
    except ConfigError as exc:
        fail(str(exc))
    if client is None:
        fail("no Alertmanager: --alertmanager URL or alerting.alertmanager_url", 2)
    return client


def _since(text: str | None) -> int:
    """``--since``: a duration back from now (``1h``) or an ISO time."""
    if text is None:
        return 0
    try:
        return time.time_ns() - duration_ns(text)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--since: {text!r} is neither a duration (1h, 30m) nor an ISO time", 2)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1e9)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


@contextmanager
def _opened(
    store: Path | None, database: str | None, config: Path | None, failing: str
) -> Iterator[Store]:
    """The store to read or record in (a live recorder's, read-only, when one holds it); a
    store error anywhere inside exits with ``failing: <the error>``."""
    try:
        with open_store_for_query(store, database, config) as st:
            yield st
    except AuditError as exc:
        fail(f"{failing}: {exc}")


_SEEN_TIMEOUT_S = 10.0


def _record_in(st: Store, config: Path | None, action: dict[str, Any]) -> str:
    """Record ``action`` (the keywords of ``write_action``): directly in a store this
    process may write, else through the alerts topic to the recorder holding it. Returns
    how: ``store``, ``recorder`` (written by it) or ``alerts_topic`` (sent, not yet seen)."""
    if not isinstance(st, LiveStore):
        write_action(st, **action)
        return "store"
    if config is None and not os.environ.get("STAMPLINE_CONFIG"):
        fail(
            "the store is held by a running recorder (read-only here): pass --config FILE "
            "with alerting.topic, which the recorder writes into the store"
        )
    try:
        cfg = load_config(config_path(config))
    except ConfigError as exc:
        fail(str(exc))
    topic = cfg.alerting.topic
    # On an embedded broker (private to `stampline run`) the recorder's live file names it.
    bootstrap = st.broker if cfg.broker.embedded else cfg.broker.bootstrap_servers
    if topic is None or bootstrap is None:
        fail(
            "the store is held by a running recorder (read-only here), and actions reach it "
            "only through alerting.topic on its broker: set alerting.topic (and "
            "broker.bootstrap_servers, or run the recorder with `stampline run`)"
        )
    from confluent_kafka import KafkaException, Producer

    from stampline.collectors import producer_config

    where: list[tuple[int, int]] = []
    errors: list[str] = []

    def delivered(error: Any, msg: Any) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            where.append((msg.partition(), msg.offset()))

    record = action_record(**action)
    try:
        producer = Producer(producer_config(bootstrap, cfg.broker.client))
        key = (record["fingerprint"] or record["silence_id"] or record["action"]).encode()
        producer.produce(topic, orjson.dumps(record), key, on_delivery=delivered)
        left = producer.flush(10)
    except (KafkaException, BufferError) as exc:
        fail(f"the action could not be sent to {topic}: {exc}")
    if left or errors or not where:
        fail(f"the action could not be sent to {topic}: {errors[:1] or 'no acknowledgement'}")
    partition, offset = where[0]
    deadline = time.monotonic() + _SEEN_TIMEOUT_S
    while time.monotonic() < deadline:
        (row,) = st.query(
            "SELECT count() AS n FROM {db}.alert_actions "
            "WHERE src = {src:String} AND src_offset = {o:Int64}",
            {"src": f"{topic}/{partition}", "o": offset},
        )
        if int(row["n"]):
            return "recorder"
        time.sleep(0.1)
    err.print(
        f"warning: sent to {topic}[{partition}]@{offset}; the recorder has not written it "
        f"yet (it will when it catches up)",
        highlight=False,
    )
    return "alerts_topic"


@alerts_app.command("check")
def check(definitions: DefsOpt = None, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Validate alert definitions; errors name file:line, key and the bad value (exit 1)."""
    parsed = _definitions(definitions, config)
    summary = {
        "alerts": [{"id": a.id, "kind": a.kind, "severity": a.severity} for a in parsed.alerts],
        "providers": [p.provider for p in parsed.providers],
        "calendars": sorted(parsed.calendars),
    }
    if json:
        emit_json(summary)
        return
    out.print(
        f"ok: {len(parsed.alerts)} alert(s), {len(parsed.providers)} expected provider(s), "
        f"{len(parsed.calendars)} calendar(s)",
        highlight=False,
    )


@alerts_app.command("list")
def list_alerts(
    since: Annotated[
        str | None, typer.Option(help="A duration back from now (1h) or an ISO time.")
    ] = None,
    alert: Annotated[str | None, typer.Option(help="Only this alert id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """The alert history: every transition (pending, firing, resolved), oldest first."""
    start = _since(since)
    with _opened(store, database, config, "the store could not answer") as st:
        rows = read_history(st, start, limit, alert)
    if json:
        emit_json({"alerts": rows})
        return
    if not rows:
        out.print("no alerts" + (f" since {_iso(start)}" if start else ""))
        return
    table = Table("at (UTC)", "state", "alert", "severity", "labels", "summary", "fingerprint")
    for r in rows:
        labels = {
            k: v for k, v in r["labels"].items() if k not in {"alertname", "kind", "severity"}
        }
        table.add_row(
            _iso(r["at_ns"]),
            (r["state"]),
            (r["alert_id"]),
            (r["severity"]),
            (" ".join(f"{k}={v}" for k, v in sorted(labels.items()))),
            (r["annotations"].get("summary", "")),
            (r["fingerprint"]),
        )
    out.print(table)


@export_app.command("prometheus")
def export_prometheus(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the two files.")] = Path("."),
    definitions: DefsOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Write stampline.rules.yml (Prometheus alerting rules) and stampline.rules.test.yml
    (`promtool test rules` unit tests) equivalent to the definitions.

    A definition's own summary is exported as a Go template; a placeholder the exported rule
    has no value for (a figure only the in-stream detector knows) is shown as written, and
    named in a note on stderr and in the rules file's header."""
    parsed = _definitions(definitions, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    rules, tests = out_dir / "stampline.rules.yml", out_dir / "stampline.rules.test.yml"
    rules.write_text(prometheus_rules(parsed), "utf-8")
    tests.write_text(prometheus_tests(parsed, rules.name), "utf-8")
    notes = [n for d in parsed.alerts for n in summary_notes(d)]
    for note in notes:  # also a comment in the rules file's header
        err.print(f"note: {note}", highlight=False)
    if json:
        emit_json({"rules": str(rules), "tests": str(tests), "notes": notes})
        return
    out.print(f"wrote {rules!s} and {tests!s}", highlight=False)
    out.print(f"check them: promtool check rules {rules} && promtool test rules {tests}",
              highlight=False)  # fmt: skip


@export_app.command("alertmanager")
def export_alertmanager(
    output: Annotated[Path, typer.Option("--out", help="The file to write.")] = Path(
        "alertmanager.stampline.yml"
    ),
    receiver: Annotated[str, typer.Option(help="Receiver name to route to.")] = "stampline",
    definitions: DefsOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Write an Alertmanager configuration: group_by, the inhibition of provider alerts while
    a collector is down, and market-hours time_intervals per venue from the calendars."""
    parsed = _definitions(definitions, config)
    output.write_text(alertmanager_config(parsed, receiver), "utf-8")
    if json:
        emit_json({"config": str(output)})
        return
    out.print(f"wrote {output!s}; check it: amtool check-config {output}",
              highlight=False)  # fmt: skip


def _matchers(alert: str | None, match: list[str] | None) -> dict[str, str]:
    matchers: dict[str, str] = {}
    if alert:
        matchers["alertname"] = alert
    for m in match or []:
        key, eq, value = m.partition("=")
        if not eq or not key:
            fail(f"--match {m!r}: give label=value", 2)
        matchers[key.strip()] = value.strip()
    if not matchers:
        fail("say what to snooze: --alert ID and/or --match label=value", 2)
    return matchers


def _record(store: Path | None, database: str | None, config: Path | None, **action: Any) -> str:
    """Record an action (see :func:`_record_in`); ``""`` (with a warning) without a store."""
    if store is None and config is None and not os.environ.get("STAMPLINE_CONFIG"):
        err.print("warning: no --store or --config: the action is not recorded in the history")
        return ""
    with _opened(store, database, config, "the store refused the record") as st:
        return _record_in(st, config, action)


@alerts_app.command("snooze")
def snooze(
    reason: Annotated[str, typer.Option(help="Why (kept for compliance).")],
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 30m, 2h.")] = "1h",
    alert: Annotated[str | None, typer.Option("--alert", help="An alert id.")] = None,
    match: Annotated[
        list[str] | None, typer.Option("--match", help="label=value; repeat for more.")
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    alertmanager: AmOpt = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Silence matching alerts in Alertmanager for a while, and record who, when, why and
    until in the store."""
    matchers = _matchers(alert, match)
    try:
        length = duration_ns(for_)
    except ValueError as exc:
        fail(f"--for: {exc}", 2)
    if length <= 0:
        fail("--for must be positive", 2)
    who = by or getpass.getuser()
    now = time.time_ns()
    try:
        silence_id = _am(alertmanager, config).create_silence(
            matchers, now, now + length, who, reason
        )
    except AlertDeliveryError as exc:
        fail(str(exc))
    via = _record(
        store, database, config, at_ns=now, action="snooze", alert_id=alert or "",
        matchers=matchers, until_ns=now + length, by=who, reason=reason, silence_id=silence_id,
    )  # fmt: skip
    result = {"silence_id": silence_id, "until": _iso(now + length), "matchers": matchers,
              "by": who, "recorded": via in ("store", "recorder"), "recorded_via": via}  # fmt: skip
    if json:
        emit_json(result)
        return
    out.print(f"snoozed until {_iso(now + length)}: silence {(silence_id)}", highlight=False)


@alerts_app.command("unsnooze")
def unsnooze(
    silence_id: Annotated[str, typer.Argument(help="The silence id `alerts snooze` printed.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    alertmanager: AmOpt = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """End a snooze early (expire its Alertmanager silence) and record it."""
    try:
        _am(alertmanager, config).delete_silence(silence_id)
    except AlertDeliveryError as exc:
        fail(str(exc))
    now = time.time_ns()
    via = _record(
        store, database, config, at_ns=now, action="unsnooze", until_ns=now,
        by=by or getpass.getuser(), reason=reason, silence_id=silence_id,
    )  # fmt: skip
    if json:
        emit_json({"silence_id": silence_id, "expired": True,
                   "recorded": via in ("store", "recorder"), "recorded_via": via})  # fmt: skip
        return
    out.print(f"silence {(silence_id)} expired", highlight=False)


@alerts_app.command("dismiss")
def dismiss(
    fingerprint: Annotated[str, typer.Argument(help="The alert instance (`alerts list`).")],
    as_: Annotated[
        Literal["expected", "false_positive", "fixed"],
        typer.Option("--as", help="expected | false_positive | fixed"),
    ],
    reason: Annotated[str, typer.Option(help="Why.")],
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Dismiss an alert instance with a verdict. A pattern dismissed as expected
    `dismissals.downgrade_after` times is downgraded one severity level (not on a volatile
    market); nothing changes thresholds."""
    with _opened(store, database, config, "the store could not answer") as st:
        found = st.query(
            "SELECT alert_id FROM {db}.alert_history WHERE fingerprint = {f:String} LIMIT 1",
            {"f": fingerprint},
        )
        if not found:
            fail(f"no alert instance {fingerprint!r} in the history (see `alerts list`)")
        via = _record_in(
            st, config, {"at_ns": time.time_ns(), "action": "dismiss",
                         "alert_id": found[0]["alert_id"], "fingerprint": fingerprint,
                         "by": by or getpass.getuser(), "reason": reason, "verdict": as_},
        )  # fmt: skip
        # (parameters, not literals: a live endpoint cuts a query's trailing string literal)
        count = st.query(
            "SELECT count() AS n FROM {db}.alert_actions WHERE action = {a:String} "
            "AND fingerprint = {f:String} AND verdict = {v:String}",
            {"a": "dismiss", "f": fingerprint, "v": "expected"},
        )[0]["n"]
    if json:
        emit_json({"fingerprint": fingerprint, "verdict": as_, "dismissed_as_expected": count,
                   "recorded_via": via})  # fmt: skip
        return
    out.print(f"dismissed {(fingerprint)} as {as_} ({count} time(s) as expected)",
              highlight=False)  # fmt: skip


@alerts_app.command("tune")
def tune(
    since: Annotated[
        str | None, typer.Option(help="A duration back from now (30d) or an ISO time.")
    ] = None,
    definitions: DefsOpt = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Suggest `for` changes from the history and people's dismissals. Reports only: it
    never changes a definition."""
    parsed = _definitions(definitions, config)
    start = _since(since)
    with _opened(store, database, config, "the store could not answer") as st:
        found = suggest(parsed, read_history(st, start, 1_000_000), read_actions(st, start))
    if json:
        emit_json({"suggestions": [s.to_dict() for s in found]})
        return
    if not found:
        out.print("no alerts in the history: nothing to suggest")
        return
    table = Table("alert", "fired", "median firing s", "dismissals", "for now", "suggested", "why")
    for s in found:
        table.add_row(
            (s.alert_id),
            str(s.fired),
            "—" if s.median_firing_s is None else f"{s.median_firing_s:g}",
            (", ".join(f"{k} {v}" for k, v in sorted(s.dismissals.items())) or "—"),
            s.current_for or "—",
            s.suggested_for or "—",
            (s.why),
        )
    out.print(table)


@alerts_app.command("watch")
def watch_cmd(config: ConfigOpt = None) -> None:
    """Run the provider watch of a multi-gate deployment: reads every gate's facts from
    `alerting.facts_topic`, judges provider_silent and dlq_rate, delivers. Until SIGTERM."""
    from stampline._alerts import for_watch
    from stampline.cli._start import serve_metrics, start_sidecar
    from stampline.wiring import open_store, sidecar_metrics

    started = start_sidecar(config)
    cfg, stop = started.config, started.stop
    a = cfg.alerting
    if a.definitions is None or a.facts_topic is None or cfg.broker.bootstrap_servers is None:
        fail("alerts watch needs alerting.definitions, alerting.facts_topic and a broker", 2)
    metrics = sidecar_metrics(cfg)
    serve_metrics("alerts watch", cfg, metrics.serve)
    try:
        if a.topic:
            # The history goes through the alerts topic to the recorder: this process only
            # reads the store (dismissals), and never opens one the recorder must hold.
            parts = for_watch(cfg, cfg.broker.bootstrap_servers, None, metrics)
            err.print(f"alerts watch: facts from {a.facts_topic}, alerts to {a.topic}",
                      highlight=False)  # fmt: skip
            stop.wait()
            parts.close()
            return
        with open_store(cfg.store) as store:
            parts = for_watch(cfg, cfg.broker.bootstrap_servers, store, metrics)
            err.print(f"alerts watch: facts from {(a.facts_topic)}", highlight=False)
            stop.wait()
            parts.close()
    except (DefinitionError, AuditError) as exc:
        fail(str(exc))
