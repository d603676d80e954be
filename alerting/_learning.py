"""Dismiss and learn: how often each alert instance was dismissed as expected (from the
store's ``alert_actions``), and whether a provider's market is volatile right now.

Volatility is measured as a provider's update rate over the last ``short`` window against
its own baseline (an exponentially weighted rate over ``long``): a market moving fast makes
providers publish faster, and that is when a learned downgrade must not hide an alert.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping

from stampline.audit import Store


class DismissalBook:
    """Dismissals as ``expected`` per instance fingerprint. Thread-safe."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts = dict(counts or {})
        self._lock = threading.Lock()

    @classmethod
    def from_store(cls, store: Store) -> DismissalBook:
        """Read every dismissal-as-expected the store holds.

        Raises:
            StoreError: the store could not answer.
        """
        rows = store.query(
            "SELECT fingerprint, count() AS n FROM {db}.alert_actions "
            "WHERE action = 'dismiss' AND verdict = 'expected' GROUP BY fingerprint"
        )
        return cls({r["fingerprint"]: int(r["n"]) for r in rows})

    def count(self, fingerprint: str) -> int:
        with self._lock:
            return self._counts.get(fingerprint, 0)

    def add(self, fingerprint: str) -> None:
        with self._lock:
            self._counts[fingerprint] = self._counts.get(fingerprint, 0) + 1


class UpdateRates:
    """Per provider: a short-window update rate and a long baseline, both exponentially
    weighted over event time. ``ratio`` is short / baseline (1.0 until there is a baseline)."""

    def __init__(self, short_s: float = 10.0, long_s: float = 600.0) -> None:
        self.short_s = short_s
        self.long_s = long_s
        # provider -> [short, long, short weight, long weight, last ns]; the weights undo the
        # averages' start at zero (a new provider's baseline is its rate so far, not ~0)
        self._state: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def add(self, counts: Mapping[str, int], at_ns: int) -> None:
        with self._lock:
            for p, n in counts.items():
                st = self._state.get(p)
                if st is None:
                    self._state[p] = [0.0, 0.0, 0.0, 0.0, float(at_ns)]
                    continue
                dt = (at_ns - st[4]) / 1e9
                if dt <= 0:
                    continue  # same instant (two gates' facts): counted with the next
                rate = n / dt
                for i, window in ((0, self.short_s), (1, self.long_s)):
                    w = 1 - math.exp(-dt / window)
                    st[i] += w * (rate - st[i])
                    st[i + 2] += w * (1 - st[i + 2])
                st[4] = float(at_ns)

    def ratio(self, provider: str) -> float:
        with self._lock:
            st = self._state.get(provider)
            if st is None or st[3] == 0 or st[1] <= 0:
                return 1.0
            return (st[0] / st[2]) / (st[1] / st[3])
