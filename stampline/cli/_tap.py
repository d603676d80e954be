"""`stampline tap`: observe topics read-only and record one sighting per record."""

from __future__ import annotations

from typing import Annotated

import typer

from stampline.cli._app import ConfigOpt, JsonOpt, app, emit_json, err, fail


@app.command()
def tap(
    config: ConfigOpt = None,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="A topic to observe (repeat; default: tap.topics)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Observe topics without touching them: one trail row per record, stage `tap:<topic>`.

    The tap reads as its own consumer group (`tap.group_id`) and never produces, so the
    audited pipeline gains no latency. A record's event id comes from its stamp headers;
    an unstamped record's from the payload fields in `tap.key_fields` (so taps on two
    topics find the same event), else from where it was read. Runs until SIGTERM or
    Ctrl-C, then writes what is pending, commits and exits 0; progress goes to stderr.
    The sightings go to the trail topic (`topics.trail`) for `stampline recorder`.
    """
    from stampline.cli._start import report_progress, serve_metrics, sidecar_broker, start_sidecar
    from stampline.collectors import Tap
    from stampline.wiring import sidecar_metrics, tap_settings, trail_topic

    started = start_sidecar(config)
    cfg, stop = started.config, started.stop
    topics = topic or cfg.tap.topics
    if not topics:
        fail("no topics to observe: pass --topic NAME or set tap.topics in the file", 2)
    metrics = sidecar_metrics(cfg)
    serve_metrics("tap", cfg, metrics.serve)
    with sidecar_broker("tap", cfg, [cfg.topics.trail]) as bootstrap:
        # The trail leaves on the broker: no store is opened here.
        settings = tap_settings(cfg, bootstrap, topics)
        trail = trail_topic(cfg, f"{settings.stage}@{settings.host}")
        the_tap = Tap(settings, trail, metrics)
        err.print(f"tap: observing {', '.join(topics)} at {bootstrap}", highlight=False)
        report_progress(
            stop,
            lambda: (
                f"tap: records {the_tap.stats.records:,} "
                f"observations {the_tap.stats.observations:,}"
            ),
        )
        the_tap.run(stop)
    s = the_tap.stats
    if json_out:
        emit_json(
            {
                "records": s.records,
                "observations": s.observations,
                "unstamped": s.unstamped,
                "keyed": s.keyed,
                "bad_stamps": s.bad_stamps,
            }
        )
    err.print(
        f"tap: stopped cleanly; records {s.records:,} observations {s.observations:,} "
        f"unstamped {s.unstamped:,} (by key {s.keyed:,}) bad stamps {s.bad_stamps:,}",
        highlight=False,
    )
