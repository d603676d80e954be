"""`stampline store migrate` and `stampline audit verify`: the store's schema and integrity."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stampline._terminal import line
from stampline.audit import AuditError, PublishedHead, generate_key, load_public_key
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
    store_app,
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


ExpectHeadOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--expect-head",
        metavar="[CHAIN=]HEX",
        help="A chain head published elsewhere (the recorder's heads topic or log): it must "
        "be in that chain, else the chain was truncated or rewritten. Repeat per chain; a bare "
        "HEX may be in any chain.",
    ),
]
_HEX64 = re.compile(r"\A[0-9a-fA-F]{64}\Z")


def parse_expected_heads(values: list[str]) -> list[tuple[str, str]]:
    """``[CHAIN=]HEX`` values as (chain, head) pairs; exits 2 naming a malformed one."""
    pairs = []
    for value in values:
        chain, _, head = value.rpartition("=")
        if not _HEX64.match(head):
            fail(f"--expect-head {value!r}: the head must be 64 hex digits, as [CHAIN=]HEX", 2)
        pairs.append((chain, head.lower()))
    return pairs


PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="The recorder's public key (PEM, from `stampline audit keygen`): with "
        "--published-heads, a head counts only when that key signed it.",
    ),
]


@audit_app.command()
def verify(
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    expect_head: ExpectHeadOpt = None,
    published_heads: Annotated[
        bool,
        typer.Option(
            "--published-heads",
            help="Also check every head the recorder published on `topics.trail_heads`, in "
            "order, and that every chain in the store is one they name (needs --config "
            "naming the broker).",
        ),
    ] = False,
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
    expected = parse_expected_heads(expect_head or [])
    key = None
    if public_key is not None:
        if not published_heads:
            fail("--public-key checks published heads: add --published-heads", 2)
        try:
            key = load_public_key(public_key)
        except AuditError as exc:
            fail(str(exc), 2)
    published = _published(config) if published_heads else []

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


def _published(config: Path | None) -> list[PublishedHead]:
    """Every head published on the configured heads topic, in order."""
    from stampline.cli._app import config_path
    from stampline.collectors import read_heads
    from stampline.config import ConfigError, load_config

    path = config_path(config)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        fail(str(exc))
    if cfg.broker.embedded or not cfg.broker.bootstrap_servers:
        fail("--published-heads needs broker.bootstrap_servers (an embedded broker keeps none)", 2)
    heads = read_heads(
        cfg.broker.bootstrap_servers, cfg.topics.trail_heads, extra=dict(cfg.broker.client)
    )
    if not heads:  # else a deleted heads topic would switch the chain inventory off
        fail(f"no published heads on {cfg.topics.trail_heads}: nothing outside the store to check")
    err.print(line(f"verify: {len(heads)} published heads on {cfg.topics.trail_heads}"))
    return heads
