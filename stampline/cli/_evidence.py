"""`stampline evidence`: a folder of evidence for a regulator (HTML, PDF, JSON, manifest)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stampline import __version__
from stampline._terminal import line, styled
from stampline.audit import AuditError, NotFoundError, PublishedHead, Store, VerifyReport
from stampline.cli._app import (
    ConfigOpt,
    DatabaseOpt,
    ExpectHeadOpt,
    JsonOpt,
    PublicKeyOpt,
    PublishedHeadsOpt,
    StoreOpt,
    app,
    config_path,
    emit_json,
    err,
    fail,
    open_store_for_query,
    out,
    trust_anchors,
)
from stampline.config import ENV_CONFIG_FILE, Config, ConfigError, EvidenceConfig, load_config
from stampline.evidence import (
    Context,
    EvidenceError,
    InputFile,
    decision_evidence,
    event_evidence,
    parse_period,
    period_evidence,
    regime_tier,
    write_bundle,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@app.command()
def evidence(
    decision: Annotated[
        str | None,
        typer.Option("--decision", "-d", help="Evidence for a decision and all its inputs."),
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", "-e", help="Evidence for one event.")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="Clock-compliance report for FROM..TO: ISO-8601 times (UTC unless a zone "
            "is given), e.g. 2026-11-27T09:00:00Z..2026-11-27T17:30:00Z, or relative to now: "
            "now, now-DURATION, e.g. now-1h..now.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="With --period: only this stamping host.")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write (default: `evidence-<kind>-<id>`)."),
    ] = None,
    tier: Annotated[
        str | None,
        typer.Option(
            "--tier",
            help="Clock-accuracy tier to judge stamps against: hft, other or voice "
            "(default: the configuration's evidence.tier, else other).",
        ),
    ] = None,
    regime: Annotated[
        str | None,
        typer.Option(
            "--regime",
            help="Regime and its version the tier belongs to (default: the configuration's "
            "evidence.regime, else rts25/2017/574).",
        ),
    ] = None,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules",
            help="A rule file to hash into the manifest and match verdicts against "
            "(repeatable; the configuration's rule files are added).",
        ),
    ] = None,
    pdf: Annotated[
        bool, typer.Option("--pdf/--no-pdf", help="Print the PDF with headless Chromium.")
    ] = True,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Verify the whole trail's chain while producing (slow on a large store).",
        ),
    ] = True,
    expect_head: ExpectHeadOpt = None,
    published_heads: PublishedHeadsOpt = False,
    public_key: PublicKeyOpt = None,
    store: StoreOpt = None,
    database: DatabaseOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the evidence a regulator asks for into a folder.

    report.html (self-contained: no scripts, nothing fetched), report.pdf (the same page
    printed by headless Chromium; skipped, with the reason, where Chromium is missing),
    evidence.json (the facts, schema stampline.evidence/3, see docs/evidence.md) with its
    JSON Schema, and manifest.json + SHA256SUMS (SHA-256 of every file and of the
    configuration and rule files it was built from).

    With --decision or --event: every stamp with its host, clock-error bound and where the
    bound came from, judged against the MiFID II RTS 25 tier the configuration declares
    (evidence.tier, evidence.stages; --tier overrides it); the decision's latency, each
    input received to the decision made, ± the combined bound; stage and hop times as value ±
    combined bound, flagged where the bound makes them or their order uncertain; rule
    verdicts (warnings included) with the rule file's hash recorded at the verdict; and the
    integrity proof: the ledger batches holding the rows (observations and dead letters),
    their digests and links, the head of each hash chain involved, and the
    `stampline audit verify --expect-head CHAIN=HEX` command that re-verifies them.

    With --period FROM..TO: per host and stage, bound percentiles, the share of events and
    of time within the tier, excursions (start, end, duration, peak), observed granularity
    and the bound's sources. FROM and TO may be relative to now (now-1h..now), as a clock
    alert's investigate command gives them.

    The verification run while producing checks the same trust anchors as `stampline audit
    verify`: --expect-head, --published-heads and --public-key (a chain made up from batch 1
    is only found against heads); any finding is the banner on page 1. A chDB folder is read
    from its files unless chDB's lock shows the process its live file names holds it (a
    running recorder): a file inside the store never redirects the report.

    Exits 1 when the subject is not in the trail, the store cannot answer, or the trail
    fails verification (the folder is still written, with a banner on page 1 and each value
    in doubt marked); 2 on bad usage, or when --out holds another subject's evidence (it is
    never overwritten).
    """
    if sum(x is not None for x in (decision, event, period)) != 1:
        fail("give exactly one of --decision ID, --event ID or --period FROM..TO", 2)
    if host is not None and period is None:
        fail("--host goes with --period", 2)
    cfg, inputs = _inputs(config, rules or [])
    declared = cfg.evidence if cfg is not None else EvidenceConfig()
    try:
        reg, the_tier = regime_tier(regime or declared.regime, tier or declared.tier)
        stage_tiers = {stage: reg.tier(name) for stage, name in declared.stages.items()}
    except ValueError as exc:
        fail(str(exc), 2)
    ctx = Context(
        software=f"stampline {__version__}",
        regime=reg,
        tier=the_tier,
        store_args=_store_args(store, database, config),
        inputs=tuple(inputs),
        stage_tiers=stage_tiers,
        declared=_declared(tier, cfg, inputs),
    )
    if not verify and (expect_head or published_heads or public_key):
        fail("--expect-head, --published-heads and --public-key need --verify", 2)
    anchors = trust_anchors(config, expect_head, published_heads, public_key)
    span = None
    if period is not None:
        try:
            span = parse_period(period)
        except ValueError as exc:
            fail(str(exc), 2)
    with open_store_for_query(store, database, config, follow_live="held") as st:
        try:
            checked = _verify(st, *anchors) if verify else None
            if span is not None:
                doc = period_evidence(st, span[0], span[1], ctx, host=host, verified=checked)
            elif decision is not None:
                doc = decision_evidence(st, decision, ctx, checked)
            else:
                doc = event_evidence(st, event or "", ctx, checked)
        except ValueError as exc:
            fail(str(exc), 2)
        except NotFoundError as exc:
            fail(str(exc))
        except AuditError as exc:
            fail(f"the store could not answer: {exc}")
    subject = doc.to_dict()["subject"]
    folder = out_dir or Path(
        re.sub(r"[^A-Za-z0-9._-]+", "-", f"evidence-{subject['kind']}-{subject['id']}")
    )
    if pdf:
        err.print(line(("evidence:", "dim"), " printing the PDF with headless Chromium"))
    try:
        bundle = write_bundle(folder, doc.to_dict(), pdf=pdf)
    except EvidenceError as exc:
        fail(str(exc), 2)
    if as_json:
        emit_json({**bundle.to_dict(), "subject": subject, "chain_heads": doc.heads})
    else:
        for name, sha in bundle.files.items():
            out.print(f"{sha}  {folder / name}", highlight=False)
        for chain_id, head in sorted(doc.heads.items()):
            out.print(f"chain {chain_id} head {head}", highlight=False)
    if bundle.pdf_error is not None and pdf:
        err.print(line(("no PDF:", "yellow"), f" {bundle.pdf_error}"))
    if checked is not None and not checked.ok:
        err.print(
            styled("the trail failed verification: see the report's integrity proof", "bold red")
        )
        raise typer.Exit(1)


def _verify(
    st: Store,
    expected: list[tuple[str, str]],
    published: list[PublishedHead],
    key: Ed25519PublicKey | None,
) -> VerifyReport:
    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            err.print(line(("verify:", "dim"), f" batch {done:,}/{total:,}"))

    return st.verify(progress, expected, published, key)


def _store_args(store: Path | None, database: str | None, config: Path | None) -> str:
    """The options that reach the same store, quoted for a POSIX shell."""
    if store is not None:
        args = ["--store", str(store.resolve())] + (["--database", database] if database else [])
    else:
        path = config or (
            Path(os.environ[ENV_CONFIG_FILE]) if os.environ.get(ENV_CONFIG_FILE) else None
        )
        args = ["--config", str(path.resolve())] if path else []
    return shlex.join(args)


def _declared(tier: str | None, cfg: Config | None, inputs: list[InputFile]) -> str:
    """Where the tier the report uses was declared, in words the report shows."""
    if tier is not None:
        return "--tier"
    if cfg is not None and "tier" in cfg.evidence.model_fields_set:
        path = next(f.path for f in inputs if f.role == "config")
        return f"evidence.tier in {Path(path).resolve()}"
    return "the default: the deployment declares no tier (evidence.tier)"


def _inputs(config: Path | None, rule_files: list[Path]) -> tuple[Config | None, list[InputFile]]:
    """The configuration (when given) and the configuration and rule files, each hashed, the
    rules' ids and versions listed."""
    from stampline.rules import RuleFileError, load_rule_file

    found: list[InputFile] = []
    files = list(rule_files)
    cfg = None
    if config is not None or os.environ.get(ENV_CONFIG_FILE):
        path = config_path(config)
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            fail(str(exc))
        found.append(InputFile.read("config", path))
        files += [f for f in cfg.rules.files if f not in files]
    for f in files:
        try:
            rf = load_rule_file(f)
        except (OSError, RuleFileError) as exc:
            fail(f"rule file {f}: {exc}", 2)
        found.append(InputFile.read("rules", f, {r.id: r.version for r in rf.rules}))
    return cfg, found
