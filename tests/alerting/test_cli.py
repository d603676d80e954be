"""`stampline alerts ...` commands: check, list, export, snooze/unsnooze, dismiss."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from stampline.alerting import (
    AlertmanagerClient,
    Dispatcher,
    Lifecycle,
    fingerprint,
    parse_alerts,
    read_actions,
)
from stampline.audit import ChdbStore
from stampline.cli import app
from tests.alerting.conftest import Server
from tests.alerting.test_definitions import GOOD, PACKAGED

runner = CliRunner()
S = 1_000_000_000


def store_args(store: ChdbStore) -> list[str]:
    return ["--store", str(store.path), "--database", store.database]


def test_check_good_and_bad(tmp_path: Path) -> None:
    """`alerts check` says ok for a good file and exits 1 naming file:line and key for a bad one."""
    ok = runner.invoke(app, ["alerts", "check", "-d", str(PACKAGED), "--json"])
    assert ok.exit_code == 0, ok.output
    assert len(orjson.loads(ok.output)["alerts"]) == 9
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("for: 1s", "for: [x]"))
    result = runner.invoke(app, ["alerts", "check", "-d", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:11: alerts.0.for:" in result.output.replace("\n", "")


def test_export_writes_both_files(tmp_path: Path) -> None:
    """`alerts export prometheus` writes the rules and their tests, and names a summary's
    placeholders shown as written; `export alertmanager` the routing file."""
    # a sequence.gap summary naming the gate's figures: shown as written, and said so
    custom = tmp_path / "custom.alerts.yaml"
    custom.write_text(
        PACKAGED.read_text().replace(
            '"{provider} {instrument}: sequence numbers missing"',
            '"{provider} {instrument}: {missing} missing ({first}..{last})"',
        )
    )
    result = runner.invoke(
        app,
        ["alerts", "export", "prometheus", "-d", str(custom), "--out", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "stampline.rules.yml").read_text().count("- alert: ") == 9
    note = (
        "sequence.gap: summary placeholder(s) {missing}, {first}, {last} have no value in the "
        "exported rule and are shown as written"
    )
    assert orjson.loads(result.stdout)["notes"] == [note]
    assert f"note: {note}" in result.stderr.replace("\n", "")
    assert "rule_files" in (tmp_path / "stampline.rules.test.yml").read_text()
    am = tmp_path / "am.yml"
    result = runner.invoke(
        app, ["alerts", "export", "alertmanager", "-d", str(PACKAGED), "--out", str(am)]
    )
    assert result.exit_code == 0, result.output
    assert "time_intervals" in am.read_text()


def test_list_and_dismiss(store: ChdbStore) -> None:
    """`alerts list --json` returns the stored history; `alerts dismiss` records a verdict and
    counts the instance's dismissals as expected; an unknown instance is an error."""
    defs = parse_alerts(PACKAGED.read_text())
    life = Lifecycle("provider.silent", "provider_silent")
    labels = (("provider", "alpha"), ("venue", "XLON"))
    fired = life.observe(labels, 1_800_000_000 * S, active=True)
    dispatcher = Dispatcher(defs, store=store)
    dispatcher(fired)
    assert dispatcher.flush(30)
    result = runner.invoke(app, ["alerts", "list", *store_args(store), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = orjson.loads(result.output)["alerts"]
    assert (row["alert_id"], row["state"], row["labels"]["provider"]) == (
        "provider.silent", "firing", "alpha",
    )  # fmt: skip
    table = runner.invoke(app, ["alerts", "list", *store_args(store)])
    assert "provider.silent" in table.output
    for n in (1, 2):
        result = runner.invoke(
            app,
            ["alerts", "dismiss", row["fingerprint"], "--as", "expected", "--reason", "auction",
             "--by", "ana", *store_args(store), "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.output)["dismissed_as_expected"] == n
    (first, _second) = read_actions(store)
    assert (first["action"], first["verdict"], first["by"], first["reason"]) == (
        "dismiss", "expected", "ana", "auction",
    )  # fmt: skip
    missing = runner.invoke(
        app, ["alerts", "dismiss", "nope", "--as", "fixed", "--reason", "x", *store_args(store)]
    )
    assert missing.exit_code == 1
    dispatcher.close()


def test_snooze_creates_a_silence_and_records_it(
    alertmanager: Server, store: ChdbStore, uid: str
) -> None:
    """`alerts snooze` creates a real Alertmanager silence with the matchers, author and
    comment, and records who/why/until; `unsnooze` expires it."""
    result = runner.invoke(
        app,
        ["alerts", "snooze", "--alert", "provider.silent", "--match", f"provider=p{uid}",
         "--for", "30m", "--reason", "vendor maintenance", "--by", "ana",
         "--alertmanager", alertmanager.url, *store_args(store), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    silence_id = orjson.loads(result.output)["silence_id"]
    am = AlertmanagerClient(alertmanager.url)
    (silence,) = [s for s in am.silences() if s["id"] == silence_id]
    assert silence["status"]["state"] == "active"
    assert (silence["createdBy"], silence["comment"]) == ("ana", "vendor maintenance")
    assert {m["name"]: m["value"] for m in silence["matchers"]} == {
        "alertname": "provider.silent", "provider": f"p{uid}",
    }  # fmt: skip
    (action,) = read_actions(store)
    assert (action["action"], action["silence_id"], action["by"]) == ("snooze", silence_id, "ana")
    assert action["until_ns"] - action["at_ns"] == 30 * 60 * 1000 * 1_000_000
    result = runner.invoke(
        app,
        ["alerts", "unsnooze", silence_id, "--alertmanager", alertmanager.url, *store_args(store)],
    )
    assert result.exit_code == 0, result.output
    (silence,) = [s for s in am.silences() if s["id"] == silence_id]
    assert silence["status"]["state"] == "expired"
    bad = runner.invoke(
        app, ["alerts", "snooze", "--reason", "x", "--alertmanager", alertmanager.url]
    )
    assert bad.exit_code == 2


def test_tune_suggests_a_for_from_noise_and_changes_nothing(
    store: ChdbStore, tmp_path: Path
) -> None:
    """Four short firings, three dismissed as false positives, give a `for` just above their
    p90 firing time; the definitions file is left as it was."""
    defs_file = tmp_path / "alerts.yaml"
    defs_file.write_text(PACKAGED.read_text())
    before = defs_file.read_text()
    defs = parse_alerts(before)
    dispatcher = Dispatcher(defs, store=store)
    fps = []
    for i, (length, provider) in enumerate([(2, "a"), (3, "b"), (5, "c"), (60, "d")]):
        life = Lifecycle("provider.silent", "provider_silent")
        labels = (("provider", provider), ("venue", "X"))
        start = (1_800_000_000 + i * 100) * S
        dispatcher(life.observe(labels, start, active=True))
        dispatcher(life.observe(labels, start + length * S, active=False))
        fps.append(fingerprint("provider.silent", labels))
    assert dispatcher.flush(30)
    for fp in fps[:3]:
        result = runner.invoke(
            app,
            ["alerts", "dismiss", fp, "--as", "false_positive", "--reason", "blip",
             *store_args(store)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["alerts", "tune", "-d", str(defs_file), *store_args(store), "--json"]
    )
    assert result.exit_code == 0, result.output
    (s,) = orjson.loads(result.output)["suggestions"]
    assert (s["alert_id"], s["fired"], s["current_for"], s["suggested_for"]) == (
        "provider.silent", 4, "0s", "6s",
    )  # fmt: skip
    assert s["dismissals"] == {"false_positive": 3}
    assert defs_file.read_text() == before
    dispatcher.close()
