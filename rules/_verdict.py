"""What the rules say about one record."""

from __future__ import annotations

from dataclasses import dataclass, field

from stampline.rules._files import Severity


@dataclass(frozen=True, slots=True)
class Failure:
    """One rule the record broke, and why, in words a person can act on."""

    rule_id: str
    rule_version: int
    reason: str
    severity: Severity = "reject"
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one record plus the identity fields the rules extracted on the way.

    ``failures`` holds the broken ``reject`` rules: empty when the record may pass; otherwise
    the first is the one a dead letter is filed under. ``warnings`` (``warn`` rules) travel
    with a forwarded record as a flag header; ``observed`` (``observe`` and shadow rules)
    are only counted.
    """

    failures: tuple[Failure, ...] = ()
    origin_ns: int = 0
    provider: str = ""
    instrument: str = ""
    seq: int = -1
    payload: dict[str, object] | None = field(default=None, repr=False, compare=False)
    warnings: tuple[Failure, ...] = ()
    observed: tuple[Failure, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first(self) -> Failure:
        """The failure a dead letter is filed under. Only valid when not ``ok``."""
        return self.failures[0]
