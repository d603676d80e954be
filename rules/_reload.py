"""Hot reload: the live rule set, replaced when a rule file or a schema it names changes.

The gate asks for :attr:`RulesHolder.current` once at the start of each batch, so a batch
is judged by one rule set from start to finish and the next one by the new rules. An edit
that does not load (bad YAML, a bad key, a missing schema) is refused with its file, line
and key; the rules already running stay in place.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from stampline.rules._ruleset import Extraction, RuleSet
from stampline.rules.exceptions import RuleFileError

log = logging.getLogger("stampline.rules")


class RulesHolder:
    """Holds the current :class:`RuleSet`; checks its files at most every ``interval_s``."""

    def __init__(
        self,
        files: Iterable[Path],
        extraction: Extraction | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the rules now.

        Raises:
            RuleFileError: the files do not load; nothing runs on broken rules at startup.
        """
        self.files = [Path(f) for f in files]
        self.extraction = extraction
        self.interval_s = interval_s
        self._clock = clock
        self._rules = RuleSet.load(self.files, extraction)
        self._digest = self._fingerprint(self._rules)
        self._checked = clock()
        self.reloads = 0
        self.rejected = 0
        self.last_error: str | None = None

    @property
    def current(self) -> RuleSet:
        """The rules to judge the next batch with, reloaded first if a file changed."""
        if self.interval_s >= 0 and self._clock() - self._checked >= self.interval_s:
            self.reload()
        return self._rules

    def reload(self) -> bool:
        """Load the files again if they changed; True when new rules took over."""
        self._checked = self._clock()
        digest = self._fingerprint(self._rules)
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            new = RuleSet.load(self.files, self.extraction, previous=self._rules)
        except RuleFileError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            log.error("rule edit refused, old rules keep running error=%s", exc)
            return False
        self._rules = new
        self._digest = self._fingerprint(new)  # the new rules may name other schema files
        self.reloads += 1
        self.last_error = None
        log.info(
            "rules reloaded rules=%s",
            ",".join(f"{rid}@v{ver}" for rid, ver in new.rule_ids),
        )
        return True

    def _fingerprint(self, rules: RuleSet) -> str:
        digest = hashlib.sha256()
        for path in [*self.files, *sorted(rules.schema_files())]:
            digest.update(str(path).encode())
            try:
                digest.update(path.read_bytes())
            except OSError as exc:
                digest.update(f"unreadable {exc.errno}".encode())
        return digest.hexdigest()
