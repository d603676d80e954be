"""`stampline store migrate` and `stampline audit verify`: the store's schema and integrity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stampline._terminal import line
from stampline.audit import AuditError, generate_key
from stampline.cli._app import (
    ConfigOpt,
    DatabaseOpt,
    ExpectHeadOpt,
    JsonOpt,
    PublicKeyOpt,
    PublishedHeadsOpt,
    StoreOpt,
    audit_app,
    emit_json,
    err,
    fail,
    open_store_for_query,
    out,
    store_app,
    trust_anchors,
)


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
    configuration. A migration edited after it was applied is refused. A chDB folder that
    does not exist yet is created with the whole schema.
    """
    try:
        with open_store_for_query(store, database, config, create=True) as st:
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
    expect_head: ExpectHeadOpt = None,
    published_heads: PublishedHeadsOpt = False,
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove the trail unchanged: recompute every batch's digest and each ledger chain.

    Observations and dead letters are digested per batch; every ledger entry (its write
    time and expiry included) is hashed into its chain, one chain per trail partition, and
    each chain must run from batch 1 without a gap. Reports, per batch, rows changed (and
    which columns), deleted or inserted, rows in no ledgered batch, broken links, gaps and
    duplicate entries. Batches past their chained expiry are counted as expired, not
    tampered. A truncated, fully re-chained or made-up chain is consistent inside the
    database: check it against heads published outside it with `--expect-head CHAIN=HEX`
    or `--published-heads` (with `--public-key`, only heads the recorder signed count);
    once heads are given, a chain none of them names is a finding. A chDB folder is read
    directly, never through an endpoint a file inside it names: a folder a running
    recorder holds is refused. Exits 1 when anything is wrong.
    """
    expected, published, key = trust_anchors(config, expect_head, published_heads, public_key)

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            err.print(line(("verify:", "dim"), f" batch {done:,}/{total:,}"), highlight=False)

    try:
        with open_store_for_query(store, database, config, follow_live=False) as st:
            report = st.verify(progress, expected, published, key)
    except AuditError as exc:
        fail(str(exc))
    if as_json:
        emit_json({**report.to_dict(), "expected_heads": [list(p) for p in expected]})
    else:
        state = ("intact", "green") if report.ok else ("TAMPERED", "bold red")
        out.print(
            line(
                state,
                f": {report.batches:,} batches, {report.rows:,} rows, "
                f"{report.dead_letters:,} dead letters, {report.expired:,} expired; "
                f"{len(report.heads)} chains; {len(expected)} given and "
                f"{report.published_heads} published heads checked",
            ),
            highlight=False,
        )
        for chain_id, head in sorted(report.heads.items()):
            out.print(
                line(
                    f"  chain {chain_id}: {report.lengths.get(chain_id, 0):,} entries, head {head}"
                ),
                highlight=False,
            )
        if report.findings:
            t = Table(title="findings by batch", title_justify="left")
            for col in (
                "chain",
                "kind",
                "batch",
                "problem",
                "expected rows",
                "found rows",
                "detail",
            ):
                t.add_column(col)
            for f in report.findings:
                t.add_row(
                    line(f.chain_id),
                    f.kind,
                    str(f.seq),
                    f.problem,
                    str(f.expected_rows),
                    str(f.found_rows),
                    line("; ".join(x for x in (", ".join(f.columns), f.detail) if x)),
                )
            out.print(t)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command()
def keygen(
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Where to write the private key (0600); the public key goes beside it as "
            "FILE.pub. Never inside the store folder.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Make the Ed25519 key pair the recorder signs its chain heads with.

    Give the private key's path as `recorder.signing_key` in the configuration (on the
    recorder's host, outside the store folder) and hand the public key to whoever verifies:
    `stampline audit verify --published-heads --public-key FILE.pub`. Never replaces a file.
    """
    public = out_file.with_name(out_file.name + ".pub")
    try:
        kid = generate_key(out_file, public)
    except AuditError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"private_key": str(out_file), "public_key": str(public), "key_id": kid})
        return
    out.print(line(f"private key {out_file} (0600)"), highlight=False)
    out.print(line(f"public key  {public}"), highlight=False)
    out.print(line(f"key id      {kid}"), highlight=False)
