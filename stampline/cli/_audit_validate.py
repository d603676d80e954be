"""`stampline audit validate`: Great Expectations over the stored trail, with Data Docs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from stampline._terminal import styled
from stampline.audit import AuditError
from stampline.cli._app import (
    ConfigOpt,
    DatabaseOpt,
    JsonOpt,
    StoreOpt,
    audit_app,
    emit_json,
    err,
    fail,
    open_store_for_query,
    out,
)
from stampline.rules import GxMissingError, gx_module, parse_duration_ns, validate_frames

# Only columns every store version keeps; the trail's layout may grow around them.
_OBSERVATIONS = """
SELECT toString(event_id) AS event_id, stage, provider, instrument, seq,
       toUnixTimestamp64Nano(origin) AS origin_ns, toUnixTimestamp64Nano(received) AS received_ns,
       toString(outcome) AS outcome, rule_id
FROM {db}.observations WHERE received >= fromUnixTimestamp64Nano({since:Int64})
"""
_DEAD_LETTERS = """
SELECT rule_id, reason, topic, provider
FROM {db}.dead_letters WHERE received >= fromUnixTimestamp64Nano({since:Int64})
"""
RULE_ID_REGEX = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"


@audit_app.command("validate")
def validate(
    since: Annotated[str, typer.Option(help="How far back: 15m, 1h, 7d.")] = "1h",
    docs: Annotated[Path, typer.Option(help="Folder for the Data Docs site (HTML).")] = Path(
        "stampline-data-docs"
    ),
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate the stored observations and dead letters with Great Expectations.

    Checks the trail's own contract (every observation has an event id, a stage, a known
    outcome; every dead letter a well-formed rule id and a reason) over the rows received
    in the last --since, writes GX Data Docs to --docs, and exits 1 when an expectation
    fails. Needs the gx extra: pip install 'stampline[gx]'.
    """
    try:
        window = parse_duration_ns(since)
    except ValueError as exc:
        fail(f"--since: {exc}", 2)
    start = time.time_ns() - window
    with open_store_for_query(store, database, config) as st:
        try:
            observations = st.query(_OBSERVATIONS, {"since": start})
            dead = st.query(_DEAD_LETTERS, {"since": start})
        except AuditError as exc:
            fail(f"the store could not answer: {exc}")
    err.print(
        f"audit validate: {len(observations):,} observations, {len(dead):,} dead letters "
        f"since {since} ago",
        highlight=False,
    )
    try:
        frames = _frames(observations, dead)
        docs.mkdir(parents=True, exist_ok=True)
        passed, summary, index = validate_frames(frames, str(docs.resolve()))
    except GxMissingError as exc:
        fail(str(exc))
    if as_json:
        emit_json(
            {
                "since": since,
                "observations": len(observations),
                "dead_letters": len(dead),
                "success": passed,
                "data_docs": index,
                "expectations": summary,
            }
        )
    else:
        table = Table(title="Great Expectations over the trail", title_justify="left")
        for col in ("table", "expectation", "column(s)", "ok", "unexpected", "rows"):
            table.add_column(col, justify="right" if col in ("unexpected", "rows") else "left")
        for s in summary:
            cols = ", ".join(str(v) for k, v in s["kwargs"].items() if k.startswith("column"))
            table.add_row(
                s["table"],
                s["expectation"],
                cols,
                "yes" if s["success"] else styled("NO", "red"),
                f"{s['unexpected']:,}",
                f"{s['rows']:,}",
            )
        out.print(table)
        out.print(f"Data Docs: {index}", highlight=False)
    if not passed:
        raise typer.Exit(1)


def _frames(observations: list[dict[str, Any]], dead: list[dict[str, Any]]) -> list[Any]:
    import pandas as pd

    g = gx_module()
    gxe = g.expectations
    obs_cols = [
        "event_id",
        "stage",
        "provider",
        "instrument",
        "seq",
        "origin_ns",
        "received_ns",
        "outcome",
        "rule_id",
    ]
    obs = pd.DataFrame(observations, columns=obs_cols)
    dl = pd.DataFrame(dead, columns=["rule_id", "reason", "topic", "provider"])
    obs_suite = g.ExpectationSuite(
        "observations",
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="event_id"),
            gxe.ExpectColumnValuesToNotBeNull(column="stage"),
            gxe.ExpectColumnValuesToBeInSet(
                column="outcome", value_set=["forwarded", "dead_lettered", "observed"]
            ),
            gxe.ExpectColumnValuesToBeBetween(column="seq", min_value=-1),
            gxe.ExpectColumnValuesToMatchRegex(column="rule_id", regex=f"^$|{RULE_ID_REGEX}"),
        ],
    )
    dl_suite = g.ExpectationSuite(
        "dead_letters",
        expectations=[
            gxe.ExpectColumnValuesToMatchRegex(column="rule_id", regex=RULE_ID_REGEX),
            gxe.ExpectColumnValueLengthsToBeBetween(column="reason", min_value=1),
            gxe.ExpectColumnValuesToNotBeNull(column="topic"),
        ],
    )
    return [("observations", obs, obs_suite), ("dead_letters", dl, dl_suite)]
