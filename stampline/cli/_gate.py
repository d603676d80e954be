"""`stampline gate`: run the gate until SIGTERM."""

from __future__ import annotations

from typing import Any

from stampline.cli._app import ConfigOpt, app, err, fail
from stampline.rules import RuleFileError


@app.command()
def gate(config: ConfigOpt = None) -> None:
    """Run the gate: raw feed → rules → clean topic or dead letters, one trail row per event.

    The trail rows go to the trail topic (`topics.trail`), never to the store: run
    `stampline recorder` (or `stampline run`) to write them. The gate never waits on the
    store. Runs until SIGTERM or Ctrl-C, then produces what is pending, commits and exits 0.
    Progress goes to stderr every few seconds. `gate.delivery: exactly_once` uses Kafka
    transactions; `metrics.enabled: true` serves Prometheus metrics on `metrics.port`.
    """
    from stampline._clockwatch import refresher_for
    from stampline.audit import ClockBound
    from stampline.cli._start import serve_metrics, sidecar_broker, start_sidecar
    from stampline.collectors import Gate
    from stampline.wiring import (
        gate_metrics,
        gate_settings,
        rules_holder,
        sidecar_metrics,
        trail_topic,
    )

    started = start_sidecar(config)
    cfg, stop = started.config, started.stop
    try:
        rules = rules_holder(cfg)
    except RuleFileError as exc:
        fail(f"{started.path}: configuration is not usable:\n{exc}")
    metrics = sidecar_metrics(cfg)
    serve_metrics("gate", cfg, metrics.serve)
    t = cfg.topics
    with sidecar_broker("gate", cfg, [*t.raw, t.clean, t.dead_letter, t.trail]) as bootstrap:
        # The trail leaves on the broker: no store is opened here (alert history is not
        # written from the gate either; Alertmanager, the alerts topic and metrics are).
        alerting = _alerting(cfg, bootstrap, None, metrics, rules)
        detectors = alerting.detectors if alerting is not None else None
        settings = gate_settings(cfg, bootstrap, metrics)
        trail = trail_topic(cfg, f"{settings.stage}@{settings.host}")
        the_gate = Gate(settings, rules, trail, gate_metrics(cfg, metrics), detectors)
        # With chrony the bound moves: it is read again while the gate runs, and both its
        # gauge and the gate's stamps follow it.
        g = cfg.gate
        refresher = refresher_for(
            g.clock_error_source, g.clock_error_ns, g.clock_error_refresh_ns, metrics,
            settings.stage, ClockBound.from_label(settings.clock_source, settings.clock_err_ns),
            on_read=lambda b: the_gate.set_clock_bound(b.bound_ns, b.label()),
        )  # fmt: skip
        err.print(
            f"gate: {', '.join(cfg.topics.raw)} at {bootstrap} → {cfg.topics.clean} "
            f"/ {cfg.topics.dead_letter}; trail → {cfg.topics.trail}",
            highlight=False,
        )
        last = [0.0]

        def report(stats: Any) -> None:
            import time

            if time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                err.print(
                    f"gate: in {stats.events_in:,} forwarded {stats.forwarded:,} "
                    f"dead-lettered {stats.dead_lettered_total:,} "
                    f"warned {_warned(stats.warned)}",
                    highlight=False,
                )

        try:
            the_gate.run(stop, on_flush=report)
        finally:
            if refresher is not None:
                refresher.stop()
            if alerting is not None:
                alerting.close()
        s = the_gate.stats
        err.print(
            f"gate: stopped cleanly; in {s.events_in:,} forwarded {s.forwarded:,} "
            f"dead-lettered {s.dead_lettered_total:,} warned {_warned(s.warned)}",
            highlight=False,
        )


def _alerting(cfg: Any, bootstrap: str, store: Any, metrics: Any, rules: Any) -> Any:
    """The gate's alerting parts (None without alerting.definitions); exits on a bad file."""
    from stampline._alerts import for_gate
    from stampline.alerting import DefinitionError

    try:
        return for_gate(cfg, bootstrap, store, metrics, rules)
    except DefinitionError as exc:
        fail(f"alerting.definitions is not usable:\n{exc}")


def _warned(counts: Any) -> str:
    """Warn verdicts, total and per rule: ``3 (price.tick 2, seq.gap 1)``."""
    total = sum(counts.values())
    if not total:
        return "0"
    parts = ", ".join(f"{rule} {n:,}" for rule, n in counts.most_common(3))
    more = ", …" if len(counts) > 3 else ""
    return f"{total:,} ({parts}{more})"
