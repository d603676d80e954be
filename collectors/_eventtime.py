"""Event time per provider: watermarks, lateness, and a clock-offset estimate.

A provider's watermark is the newest origin time seen from it minus the allowed lateness:
an event born before its provider's watermark is late. Late events are flagged with how
late they are and forwarded as usual, never dropped; whether lateness matters is the
consumer's call.

The clock-offset estimate is the smallest ``ingested - origin`` seen from a provider over
a sliding window (the classic minimum one-way-delay estimator): transit time plus clock
skew, and negative when the provider's clock runs ahead of the gate's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

_UNSET = -(2**63)


@dataclass(slots=True)
class ProviderTime:
    """Event-time state of one provider."""

    max_origin_ns: int = _UNSET
    last_seen_ns: int = 0
    # (window bucket index, minimum offset in that bucket), oldest first
    offsets: deque[tuple[int, int]] = field(default_factory=deque)

    def offset_ns(self) -> int | None:
        return min(v for _, v in self.offsets) if self.offsets else None


class EventTime:
    """Watermarks and clock-offset estimates for every provider a sidecar sees."""

    def __init__(
        self,
        allowed_lateness_ns: int = 5_000_000_000,
        skew_window_ns: int = 60_000_000_000,
        buckets: int = 12,
        max_providers: int = 10_000,
    ) -> None:
        self.allowed_lateness_ns = allowed_lateness_ns
        self._bucket_ns = max(1, skew_window_ns // buckets)
        self._buckets = buckets
        self._max_providers = max_providers
        self.providers: dict[str, ProviderTime] = {}

    def __len__(self) -> int:
        """Providers with state."""
        return len(self.providers)

    def watermark_ns(self, provider: str) -> int | None:
        """The provider's watermark, or None before its first event."""
        p = self.providers.get(provider)
        if p is None or p.max_origin_ns == _UNSET:
            return None
        return p.max_origin_ns - self.allowed_lateness_ns

    def late_ns(self, provider: str, origin_ns: int) -> int:
        """How late an event born at ``origin_ns`` would be (0 when on time), without
        accounting it: the gate asks before it knows whether the record is accepted."""
        p = self.providers.get(provider)
        if p is None or p.max_origin_ns == _UNSET:
            return 0
        return max(0, p.max_origin_ns - self.allowed_lateness_ns - origin_ns)

    def observe(self, provider: str, origin_ns: int, ingested_ns: int) -> int:
        """Account one event; returns its lateness in ns (0 when on time).

        The watermark is taken before the event advances it, so an event is judged against
        what was known when it arrived.
        """
        p = self.providers.get(provider)
        if p is None:
            if len(self.providers) >= self._max_providers:
                return 0  # a provider flood must not grow state without bound
            p = self.providers[provider] = ProviderTime()
        p.last_seen_ns = ingested_ns
        late = 0
        if p.max_origin_ns != _UNSET:
            watermark = p.max_origin_ns - self.allowed_lateness_ns
            if origin_ns < watermark:
                late = watermark - origin_ns
        if origin_ns > p.max_origin_ns:
            p.max_origin_ns = origin_ns
        bucket = ingested_ns // self._bucket_ns
        offset = ingested_ns - origin_ns
        q = p.offsets
        if q and q[-1][0] == bucket:
            if offset < q[-1][1]:
                q[-1] = (bucket, offset)
        else:
            q.append((bucket, offset))
            while q and q[0][0] <= bucket - self._buckets:
                q.popleft()
        return late

    def clock_offset_ns(self, provider: str) -> int | None:
        """Estimated ``ingested - origin`` for the provider over the window, or None."""
        p = self.providers.get(provider)
        return p.offset_ns() if p else None
