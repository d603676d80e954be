"""The one aggregation point for provider-wide kinds: the kinds that plug a detector in
(``AlertKind.watch``). Each is handed its kind's part of every gate's facts
(``AlertKind.watched``) and ticked with the others, in the registry's order (then the
file's): the order their transitions are delivered in.

Every gate hands it :class:`~alerting.ProviderFacts` per batch (directly, or through the facts
topic when gates run in several processes); it keeps, per registered provider, the newest
origin time of an accepted record any gate has seen (refused records move no clock; on the
wall clock an origin counts no later than its intake), which its detectors read (a silence is
judged against the clock: silence sends no events, so only time passing can reveal it) and
its metrics export. A registered provider never seen counts from the moment the watch started
(on the event clock: from the earliest origin of the first accepted records), so one that
never shows up counts too.

``event_clock=True`` (replays, tests) reads "now" as the newest origin time of any provider
instead of the wall clock: a provider silent while the others publish is silent in event
time, and the outcome does not depend on how fast the feed is replayed. It cannot see every
provider going silent at once; deployments use the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stampline.alerting._calendar import in_session
from stampline.alerting._definitions import AlertsFile, ExpectedProvider
from stampline.alerting._detectors import Deliver, Judging, ProviderFacts
from stampline.alerting._kinds import KINDS
from stampline.alerting._kinds._kind import AlertKind, WatchContext, WatchDetector
from stampline.alerting._learning import DismissalBook
from stampline.alerting._lifecycle import Transition

log = logging.getLogger("stampline.alerting")


class ProviderWatch(Judging):
    """Provider-wide detection. Thread-safe: gates add facts, a ticker thread ticks."""

    def __init__(
        self,
        definitions: AlertsFile,
        deliver: Deliver,
        *,
        clock: Callable[[], int] = time.time_ns,
        event_clock: bool = False,
        started_ns: int | None = None,
        max_instances: int = 10_000,
        dismissals: DismissalBook | None = None,
    ) -> None:
        super().__init__(definitions, deliver, dismissals)
        self.event_clock = event_clock
        self._wall = clock
        self.started_ns = (0 if event_clock else clock()) if started_ns is None else started_ns
        self._lock = threading.Lock()
        self.last_origin: dict[str, int] = {}  # registered provider -> newest origin seen
        self._registered = [p.provider for p in definitions.providers]
        self._newest = 0  # newest origin of any provider (the event clock)
        context = WatchContext(definitions, self._severity_fn, max_instances, self)
        self._detectors: list[tuple[AlertKind, str, WatchDetector]] = [
            (kind, d.id, make(d, context))
            for kind in KINDS.values()
            if (make := kind.watch) is not None
            for d in definitions.alerts
            if d.kind == kind.name
        ]

    def clock(self) -> int:
        """Now: the wall clock, or with ``event_clock`` the newest origin time seen."""
        if self.event_clock:
            return max(self._newest, self.started_ns)
        return self._wall()

    def add(self, facts: ProviderFacts) -> None:
        """One gate's batch summary; its detectors judge at once (a resumed provider
        resolves without waiting for a tick)."""
        seen = facts.last_origin
        with self._lock:
            if self.event_clock and seen:
                if not self.started_ns:
                    # event time starts at the first accepted record (older facts carry no
                    # first origin: their providers' last origins are the best there is)
                    self.started_ns = facts.first_origin or min(seen.values())
                self._newest = max(self._newest, max(seen.values()))
            # Only registered providers are tracked: the registry is the list of who must be
            # there, and a batch may name thousands of others.
            # The facts name accepted records only. On the wall clock an origin is taken no
            # later than the gate's intake of it: a provider's clock running ahead must not
            # make its silence negative (and the exported gauge a time in the future).
            bound = 2**63 if self.event_clock else facts.at_ns
            last = self.last_origin
            for p in self._registered:
                o = seen.get(p)
                if o is not None and min(o, bound) > last.get(p, 0):
                    last[p] = min(o, bound)
            if self.dismissals is not None:
                self.rates.add(facts.events, facts.at_ns)
            now = self.clock()
            out: list[Transition] = []
            for kind, alert_id, detector in self._detectors:
                part = kind.watched(facts, now)
                if part is None:
                    continue
                try:
                    out += detector.add(facts.at_ns, part)
                except Exception:  # facts may come over a topic: one bad part is not fatal
                    log.exception("alert %s: facts from %r not usable", alert_id, facts.source)
        if out:
            self.deliver(out)

    def tick(self, now_ns: int | None = None) -> list[Transition]:
        """Judge at ``now_ns`` (default: the clock) and deliver."""
        now = self.clock() if now_ns is None else now_ns
        with self._lock:
            out: list[Transition] = []
            for _kind, _id, detector in self._detectors:
                out += detector.tick(now)
        if out:
            self.deliver(out)
        return out

    def silence_ns(self, provider: str, now_ns: int) -> int:
        """Time since the provider's newest event (since the watch started if never seen)."""
        return now_ns - self.last_origin.get(provider, self.started_ns)

    def in_session(self, provider: ExpectedProvider, now_ns: int) -> bool:
        """Whether the provider's venue trades at ``now_ns`` (always, without a calendar)."""
        cal = self._calendar.get(provider.provider)
        return cal is None or in_session(cal, now_ns)


class WatchTicker:
    """Ticks a :class:`ProviderWatch` every ``interval_s`` on a daemon thread (the silence
    alert's latency is at most one interval after its threshold is crossed)."""

    def __init__(self, watch: ProviderWatch, interval_s: float = 0.1) -> None:
        self.watch = watch
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)

    def start(self) -> WatchTicker:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.watch.tick()
            except Exception:  # keep ticking: one bad tick must not end silence detection
                log.exception("provider watch tick failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> WatchTicker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
