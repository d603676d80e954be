"""`stampline recorder`: the trail topic's consumer and the store's one writer."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from stampline.audit import AuditError, ChdbStore, LiveEndpoint, QueryLimits, Store
from stampline.cli._app import ConfigOpt, JsonOpt, app, emit_json, err, fail
from stampline.config import Config


@app.command()
def recorder(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Write the trail topic to the store: exactly once per trail message, never dropping.

    Consumes `topics.trail` as consumer group `recorder.group_id` (run several to share its
    partitions) and writes the configured store (chDB or a ClickHouse server). Each trail
    partition is one hash chain in the ledger; the chain heads go to `topics.trail_heads`
    and the log every `recorder.heads_interval`, signed with `recorder.signing_key` when
    one is set (`stampline audit keygen`). When the store is down the recorder
    retries with back-off (capped at `recorder.retry_max`) and lags: see the metrics
    `stampline_trail_lag_seconds` and `stampline_trail_lag_records`. Runs until SIGTERM or
    Ctrl-C, then commits what it wrote and exits 0; progress goes to stderr.

    On the embedded store (chDB) it also serves read-only live queries on 127.0.0.1
    (`recorder.query_port`), each request carrying a token it writes (0600) beside
    `<store>/.stampline-live.json`: `replay`, `hotspots` … given the same `--store` or
    `--config` find it and read through it while it runs. `audit verify` does not: it reads
    the folder itself, so it refuses the folder while the recorder holds it. A
    `recorder.query_address` other than loopback needs `recorder.query_token`.

    With `alerting.topic` set it also writes the alerts topic (every process's alert
    transitions, and the snoozes and dismissals `stampline alerts` sends while the store is
    held) into the store's alert history, exactly once per message. With `completeness`
    definitions in `alerting.definitions` it judges events lost between stages; at start it
    rebuilds that judging's state from the store (the trail's recent rows), raising again
    nothing the alert history holds.
    """
    import dataclasses

    from stampline._alerts import for_recorder
    from stampline.alerting import DefinitionError
    from stampline.broker import ensure_topics
    from stampline.cli._start import broker, report_progress, serve_metrics, start_sidecar
    from stampline.collectors import Recorder, RecorderMetrics
    from stampline.wiring import open_store, recorder_settings

    started = start_sidecar(config)
    cfg, stop = started.config, started.stop
    metrics = RecorderMetrics()
    serve_metrics("recorder", cfg, lambda: metrics.serve(cfg.metrics.port, cfg.metrics.address))
    with broker(cfg) as bootstrap:
        alerts_topic = cfg.alerting.topic
        if cfg.topics.create_missing:
            ensure_topics(
                bootstrap,
                [
                    cfg.topics.trail,
                    cfg.topics.trail_heads,
                    *([alerts_topic] if alerts_topic else []),
                ],
                cfg.topics.partitions,
            )
        try:
            store = open_store(cfg.store)
        except AuditError as exc:
            fail(str(exc))
        try:
            alerting = for_recorder(cfg, bootstrap, store, metrics)
        except DefinitionError as exc:
            store.close()
            fail(f"alerting.definitions is not usable:\n{exc}")
        with store, _live_endpoint(cfg, store, bootstrap) as live:
            if live is not None:
                err.print(f"recorder: live read-only queries on {live.url}", highlight=False)
            settings = dataclasses.replace(
                recorder_settings(cfg, bootstrap), alerts_topic=alerts_topic
            )
            try:
                the_recorder = Recorder(
                    settings, store, metrics, alerts=alerting.intake, observers=alerting.observers
                )
            except AuditError as exc:  # the signing key: unreadable, exposed, in the store
                alerting.close()
                fail(str(exc))
            where = cfg.store.url if cfg.store.backend == "clickhouse" else cfg.store.path
            err.print(
                f"recorder: {cfg.topics.trail} at {bootstrap} → {cfg.store.backend} {where}",
                highlight=False,
            )
            stats = the_recorder.stats
            report_progress(
                stop,
                lambda: (
                    f"recorder: messages {stats.messages:,} rows {stats.rows:,} "
                    f"lag {stats.lag_s:.1f}s"
                ),
            )
            try:
                the_recorder.run(stop)
            finally:
                alerting.close()
    s = the_recorder.stats
    if json_out:
        emit_json(
            {
                "messages": s.messages,
                "rows": s.rows,
                "dead_letters": s.dead_letters,
                "warnings": s.warnings,
                "skipped": s.skipped,
                "rejected": s.rejected,
                "retries": s.retries,
                "alerts_history": s.alerts_history,
                "alerts_actions": s.alerts_actions,
                "alerts_skipped": s.alerts_skipped,
                "alerts_rejected": s.alerts_rejected,
                "heads": {k: v.to_dict() for k, v in sorted(the_recorder.heads.items())},
            }
        )
    err.print(
        f"recorder: stopped cleanly; messages {s.messages:,} rows {s.rows:,} "
        f"dead letters {s.dead_letters:,} warnings {s.warnings:,} skipped {s.skipped:,} "
        f"rejected {s.rejected:,}",
        highlight=False,
    )


def _live_endpoint(
    cfg: Config, store: Store, bootstrap: str
) -> AbstractContextManager[LiveEndpoint | None]:
    """The live query endpoint on an embedded store (a server answers queries itself); it
    names the recorder's broker, where `alerts snooze` … send what the recorder records."""
    if not isinstance(store, ChdbStore):
        return nullcontext()
    r = cfg.recorder
    try:
        return LiveEndpoint(
            store,
            r.query_address,
            r.query_port,
            token=r.query_token.get_secret_value() if r.query_token else None,
            limits=QueryLimits(timeout_s=r.query_timeout_ns / 1e9),
            broker=bootstrap,
        )
    except AuditError as exc:
        fail(str(exc))  # the store is closed by the `with` that opened it
    except OSError as exc:  # names the address (host:port) it could not bind
        fail(f"recorder: live queries: {exc}")
