"""Hot reload: edits take effect without a restart; broken edits are refused; state carries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from stampline.rules import RuleFileError, RulesHolder
from tests.rules.conftest import T0_NS, raw

V1 = "  - {id: qty.max, version: 1, kind: range, field: quantity, max: 1000}\n"
V2 = "  - {id: qty.max, version: 2, kind: range, field: quantity, max: 10}\n"
SEQ = "  - {id: seq.ok, version: 1, kind: sequence}\n"


def write(path: Path, rules: str) -> None:
    path.write_text(f"version: 2\nrules:\n{rules}", "utf-8")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "live.rules.yaml"
    write(p, V1 + SEQ)
    return p


class TestHotReload:
    def test_edit_takes_effect_and_verdicts_name_the_new_version(self, path: Path) -> None:
        """After an edit, the next batch is judged by the new rule and names its version."""
        holder = RulesHolder([path], interval_s=0)
        assert holder.current.evaluate(raw(quantity=50), T0_NS).ok
        write(path, V2 + SEQ)
        verdict = holder.current.evaluate(raw(quantity=50, seq=2), T0_NS)
        assert (verdict.first.rule_id, verdict.first.rule_version) == ("qty.max", 2)
        assert holder.reloads == 1

    def test_each_rule_set_knows_the_hash_of_the_file_each_rule_came_from(
        self, path: Path, tmp_path: Path
    ) -> None:
        """A rule set maps every (rule, version) to the SHA-256 of the bytes it was loaded
        from; after an edit the new set has the new file's hash, the old set keeps its own;
        a rule of another file maps to that file's hash."""
        other = tmp_path / "other.rules.yaml"
        write(other, "  - {id: px.pos, version: 1, kind: range, field: price, min: 0}\n")
        holder = RulesHolder([path, other], interval_s=0)
        before = holder.current
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        other_sha = hashlib.sha256(other.read_bytes()).hexdigest()
        assert before.rule_files == {
            ("qty.max", 1): sha,
            ("seq.ok", 1): sha,
            ("px.pos", 1): other_sha,
        }
        write(path, V2 + SEQ)
        after = holder.current
        new_sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert new_sha != sha
        assert after.rule_files[("qty.max", 2)] == after.rule_files[("seq.ok", 1)] == new_sha
        assert ("qty.max", 1) not in after.rule_files
        assert before.rule_files[("seq.ok", 1)] == sha  # a batch in flight keeps its own

    def test_in_flight_batch_finishes_under_the_old_rules(self, path: Path) -> None:
        """A rule set taken for a batch keeps judging by the old version after a reload."""
        holder = RulesHolder([path], interval_s=0)
        in_flight = holder.current
        write(path, V2 + SEQ)
        assert holder.current is not in_flight
        assert in_flight.evaluate(raw(quantity=50), T0_NS).ok
        assert in_flight.rule_ids[-2] == ("qty.max", 1)

    def test_broken_edit_is_refused_with_file_line_and_key(self, path: Path) -> None:
        """A bad key in an edit is refused naming file:line and the key; the old rules run on."""
        holder = RulesHolder([path], interval_s=0)
        before = holder.current
        write(path, V1 + "  - {id: seq.ok, version: 2, kind: sequence, feild: seq}\n")
        assert holder.current is before
        assert holder.rejected == 1
        assert f"{path}:4: rules.1.sequence.feild: Extra inputs are not permitted" in (
            holder.last_error or ""
        )
        assert not holder.current.evaluate(raw(quantity=5000), T0_NS).ok  # v1 still judges

    def test_a_fix_after_a_broken_edit_is_picked_up(self, path: Path) -> None:
        """After a refused edit, the next good edit loads and clears the error."""
        holder = RulesHolder([path], interval_s=0)
        path.write_text("version: 2\nrules: [\n", "utf-8")
        holder.current  # noqa: B018  (a look is what triggers the reload)
        assert holder.last_error is not None
        assert "not valid YAML" in holder.last_error
        write(path, V2)
        assert holder.current.rule_ids[-1] == ("qty.max", 2)
        assert holder.last_error is None

    def test_sequence_state_survives_an_edit_of_another_rule(self, path: Path) -> None:
        """Editing a stateless rule keeps the per-key sequence state: a gap is still seen."""
        holder = RulesHolder([path], interval_s=0)
        holder.current.evaluate(raw(seq=1), T0_NS)
        write(path, V2 + SEQ)
        verdict = holder.current.evaluate(raw(seq=5, quantity=1), T0_NS)
        assert [f.rule_id for f in verdict.failures] == ["seq.ok"]

    def test_schema_edit_is_a_rule_edit(self, tmp_path: Path) -> None:
        """Changing a schema file a contract names reloads the rules."""
        schema = tmp_path / "s.json"
        schema.write_text('{"type": "object"}')
        rules = tmp_path / "r.yaml"
        rules.write_text(
            f"version: 1\nrules:\n  - {{id: c.s, version: 1, kind: schema, schema: {schema}}}\n"
        )
        holder = RulesHolder([rules], interval_s=0)
        assert holder.current.evaluate(raw(), T0_NS).ok
        schema.write_text('{"type": "object", "required": ["venue"]}')
        assert holder.current.evaluate(raw(), T0_NS).first.rule_id == "c.s"

    def test_checks_files_at_most_every_interval(self, path: Path) -> None:
        """Within the interval the files are not read again; after it, they are."""
        now = [0.0]
        holder = RulesHolder([path], interval_s=5, clock=lambda: now[0])
        first = holder.current
        write(path, V2)
        now[0] = 4.0
        assert holder.current is first
        now[0] = 5.0
        assert holder.current is not first

    def test_broken_rules_at_startup_raise(self, tmp_path: Path) -> None:
        """At startup there are no old rules to keep: broken files raise."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("version: 2\nrules: 5\n")
        with pytest.raises(RuleFileError, match=r"bad\.yaml:2: rules"):
            RulesHolder([bad])
