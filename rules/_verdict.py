"""What the rules say about one record."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Failure:
    """One rule the record broke, and why, in words a person can act on."""

    rule_id: str
    rule_version: int
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome for one record plus the identity fields the rules extracted on the way.

    ``failures`` is empty when the record passes; otherwise the first failure is the one a
    dead letter is filed under, and the rest are kept for the record.
    """

    failures: tuple[Failure, ...] = ()
    origin_ns: int = 0
    provider: str = ""
    instrument: str = ""
    seq: int = -1
    payload: dict[str, object] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first(self) -> Failure:
        """The failure a dead letter is filed under. Only valid when not ``ok``."""
        return self.failures[0]
