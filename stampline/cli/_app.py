"""The command's root, and what every command group shares: consoles, options, errors."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import orjson
import typer

from stampline import __version__
from stampline._redact import RedactingFormatter, scrub_data
from stampline._terminal import SafeConsole, line
from stampline.audit import (
    AuditError,
    PublishedHead,
    Store,
    check_database_name,
    find_live,
    load_public_key,
    store_holder,
)
from stampline.config import ENV_CONFIG_FILE, ENV_PART_NAME, ConfigError, StoreConfig, load_config

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

app = typer.Typer(
    help="Audit streaming pipelines for latency and data quality.\n\n"
    "Start with `stampline demo`, then replay the decision it prints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# Command groups more than one module adds to; each module registers its own commands.
audit_app = typer.Typer(help="Verify and validate the audit trail.", no_args_is_help=True)
rules_app = typer.Typer(help="Work with rule files and data contracts.", no_args_is_help=True)
store_app = typer.Typer(help="Manage the audit store.", no_args_is_help=True)
providers_app = typer.Typer(help="Compare data providers.", no_args_is_help=True)
for _group, _name in [
    (audit_app, "audit"),
    (rules_app, "rules"),
    (store_app, "store"),
    (providers_app, "providers"),
]:
    app.add_typer(_group, name=_name)

# Piped output keeps whole lines: tables are for people, --json is for scripts. Both
# consoles show data as text (no markup, control codes escaped, secrets hidden).
out = SafeConsole(width=None if sys.stdout.isatty() else 200, soft_wrap=True)
err = SafeConsole(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help=f"Deployment YAML (default: ${ENV_CONFIG_FILE})."),
]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="chDB store folder.")]
DatabaseOpt = Annotated[
    str | None, typer.Option("--database", help="Database in the store (default: the config's).")
]


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
PublishedHeadsOpt = Annotated[
    bool,
    typer.Option(
        "--published-heads",
        help="Also check every head the recorder published on `topics.trail_heads`, in "
        "order, and that every chain in the store is one they name (needs --config "
        "naming the broker).",
    ),
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="The recorder's public key (PEM, from `stampline audit keygen`): with "
        "--published-heads, a head counts only when that key signed it.",
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


def trust_anchors(
    config: Path | None,
    expect_head: list[str] | None,
    published_heads: bool,
    public_key: Path | None,
) -> tuple[list[tuple[str, str]], list[PublishedHead], Ed25519PublicKey | None]:
    """What verification checks the store against, from outside it: the heads given, the
    heads published on the broker, and the recorder's public key. Exits 2 on bad usage."""
    expected = parse_expected_heads(expect_head or [])
    key = None
    if public_key is not None:
        if not published_heads:
            fail("--public-key checks published heads: add --published-heads", 2)
        try:
            key = load_public_key(public_key)
        except AuditError as exc:
            fail(str(exc), 2)
    return expected, _published(config) if published_heads else [], key


def _published(config: Path | None) -> list[PublishedHead]:
    """Every head published on the configured heads topic, in order."""
    from stampline.collectors import read_heads

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


def emit_json(obj: Any) -> None:
    """Print ``obj`` as one JSON document on stdout (with no remembered secret in it)."""
    sys.stdout.write(orjson.dumps(scrub_data(obj), option=orjson.OPT_INDENT_2).decode() + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` on stderr and exit with ``code`` (1: a problem, 2: a usage error)."""
    err.print(line(("error:", "bold red"), " "), message, sep="", highlight=False)
    raise typer.Exit(code)


def config_path(config: Path | None) -> Path:
    if config is not None:
        return config
    env = os.environ.get(ENV_CONFIG_FILE)
    if env:
        return Path(env)
    fail(f"no configuration: pass --config FILE or set ${ENV_CONFIG_FILE}", 2)


def open_store_for_query(
    store: Path | None,
    database: str | None,
    config: Path | None,
    *,
    follow_live: bool | Literal["held"] = True,
    create: bool = False,
) -> Store:
    """The store named by ``--store`` or the configuration. A chDB folder that a running
    recorder holds is read through the live endpoint its ``.stampline-live.json`` names,
    unless ``follow_live`` is false (verification: nothing inside the store may vouch for it),
    which refuses a held folder instead. With ``"held"`` (evidence) the live file is followed
    only when chDB's lock shows a process holds the folder and the file names that process;
    a folder nobody holds is read from its files, whatever a file in it says. With ``create``
    a chDB folder that does not exist yet is created, with no schema (the caller migrates);
    else it is refused."""
    if database is not None:
        try:
            check_database_name(database)
        except ValueError as exc:
            fail(f"--database: {exc}", 2)
    if store is None:
        if config is None and not os.environ.get(ENV_CONFIG_FILE):
            fail("say which trail: --store PATH (a chDB folder) or --config FILE", 2)
        try:
            settings = load_config(config_path(config)).store
        except ConfigError as exc:
            fail(str(exc))
    else:
        settings = StoreConfig(path=store)
    if settings.backend == "chdb" and not settings.path.is_dir() and not create:
        fail(f"no store at {settings.path} (run `stampline demo` first, or pass the right --store)")
    from stampline.wiring import open_store

    if settings.backend == "chdb" and follow_live == "held":
        follow_live = _held_by_its_recorder(settings.path)
    if settings.backend == "chdb" and not follow_live:
        holder = store_holder(settings.path)
        if holder is not None:
            fail(
                f"the store at {settings.path} is open in process {holder} (a running recorder "
                "or `stampline run`?). Verification reads the folder's files itself, never "
                "through an endpoint the folder names: stop that process and verify again, "
                "or verify a copy made while it was stopped (or a filesystem snapshot)"
            )
    try:
        return open_store(settings, database, live=bool(follow_live), migrate=not create)
    except AuditError as exc:
        message = str(exc)
        # chDB's errors append the SQL and engine trace; the first line says what failed.
        fail(message.splitlines()[0] if settings.backend == "chdb" else message)


def _held_by_its_recorder(path: Path) -> bool:
    """Whether the live file in ``path`` names the process chDB's lock shows holding it (not
    held: False, read the files; held by another process than the file names: exit 1)."""
    holder = store_holder(path)
    if holder is None:
        return False
    live = find_live(path)
    if live is None or int(live["pid"]) != holder:
        named = "none" if live is None else f"process {live['pid']}"
        fail(
            f"the store at {path} is open in process {holder}, but its live file names {named}: "
            "stop that process and run again on the folder (or on a copy)"
        )
    return True


_NOISY_LIBRARIES = ("urllib3", "clickhouse_connect")


def _version(value: bool) -> None:
    if value:
        out.print(f"stampline {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what the sidecars do.")
    ] = False,
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    part = os.environ.get(ENV_PART_NAME, "")
    label = f"[{part.replace('%', '%%')}] " if part.isprintable() and 0 < len(part) <= 64 else ""
    handler.setFormatter(
        RedactingFormatter(f"%(asctime)s %(levelname)s {label}%(name)s %(message)s")
    )
    if not verbose:
        # The HTTP stack's retry warnings repeat what the one-line error then says (and
        # clickhouse-connect sets urllib3's level itself, so a level here would not hold).
        handler.addFilter(
            lambda r: r.levelno >= logging.ERROR or not r.name.startswith(_NOISY_LIBRARIES)
        )
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
