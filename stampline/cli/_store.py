"""`stampline store migrate` and `stampline audit verify`: the store's schema and integrity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from audit import AuditError
from stampline._terminal import line
from stampline.cli._app import (
    ConfigOpt,
    JsonOpt,
    audit_app,
    emit_json,
    err,
    fail,
    open_store_for_query,
    out,
    store_app,
)

StoreOpt = Annotated[Path | None, typer.Option("--store", help="chDB store folder.")]
DatabaseOpt = Annotated[str | None, typer.Option("--database", help="Database in the store.")]


@store_app.command()
def migrate(
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring the store's schema to this version: apply every migration it lacks.

    Safe to run any number of times: each migration (audit/sql/NNN_*.sql) runs once and is
    recorded with its checksum in schema_migrations; retention TTLs are re-stated from the
    configuration. A migration edited after it was applied is refused.
    """
    try:
        with open_store_for_query(store, database, config) as st:
            report = st.migrate()
    except AuditError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"database": st.database, **report.to_dict()})
        return
    for name in report.applied:
        out.print(f"applied   {name}")
    for name in report.already:
        out.print(f"unchanged {name}")


@audit_app.command()
def verify(
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove the trail unchanged: recompute every batch's digest and the ledger's hash chain.

    Reports, per batch, rows changed (and which columns), deleted or inserted, rows in no
    ledgered batch, and broken links in the chain. Batches older than the raw retention are
    counted as expired, not tampered. Exits 1 when anything is wrong.
    """

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            err.print(line(("verify:", "dim"), f" batch {done:,}/{total:,}"), highlight=False)

    try:
        with open_store_for_query(store, database, config) as st:
            report = st.verify(progress)
    except AuditError as exc:
        fail(str(exc))
    if as_json:
        emit_json(report.to_dict())
    else:
        state = ("intact", "green") if report.ok else ("TAMPERED", "bold red")
        out.print(
            line(
                state,
                f": {report.batches:,} batches, {report.rows:,} rows, "
                f"{report.expired:,} expired; chain head {report.head}",
            ),
            highlight=False,
        )
        if report.findings:
            t = Table(title="findings by batch", title_justify="left")
            for col in ("batch", "problem", "expected rows", "found rows", "changed columns"):
                t.add_column(col)
            for f in report.findings:
                t.add_row(
                    str(f.seq),
                    f.problem,
                    str(f.expected_rows),
                    str(f.found_rows),
                    ", ".join(f.columns),
                )
            out.print(t)
    if not report.ok:
        raise typer.Exit(1)
