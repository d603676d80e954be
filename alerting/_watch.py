"""The one aggregation point for provider-wide kinds: ``provider_silent``, ``dlq_rate``, and
the kinds that plug a detector in (``AlertKind.watch``: it is handed its kind's part of every
gate's facts, and ticked with the others).

Every gate hands it :class:`~alerting.ProviderFacts` per batch (directly, or through the facts
topic when gates run in several processes); it keeps, per registered provider, the newest
origin time of an accepted record any gate has seen (refused records move no clock; on the
wall clock an origin counts no later than its intake), and judges silence against the
clock: silence sends no events, so only time passing can reveal it. A registered provider
never seen counts from the moment the watch started (on the event clock: from the earliest
origin of the first accepted records), so one that never shows up fires too.

``event_clock=True`` (replays, tests) reads "now" as the newest origin time of any provider
instead of the wall clock: a provider silent while the others publish is silent in event
time, and the outcome does not depend on how fast the feed is replayed. It cannot see every
provider going silent at once; deployments use the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from stampline._common import SECOND_NS, UNNAMED_PROVIDER
from stampline.alerting._calendar import in_session
from stampline.alerting._definitions import AlertsFile, Calendar, ExpectedProvider
from stampline.alerting._detectors import Deliver, ProviderFacts, severity_fn
from stampline.alerting._kinds import KINDS
from stampline.alerting._kinds._kind import WatchContext, WatchDetector
from stampline.alerting._kinds.dlq_rate import DlqRate
from stampline.alerting._kinds.provider_silent import ProviderSilent
from stampline.alerting._learning import DismissalBook, UpdateRates
from stampline.alerting._lifecycle import Labels, Lifecycle, Transition

log = logging.getLogger("stampline.alerting")


class ProviderWatch:
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
        self.definitions = definitions
        self.dismissals = dismissals
        self.rates = UpdateRates()
        self.deliver = deliver
        self.event_clock = event_clock
        self._wall = clock
        self.started_ns = (0 if event_clock else clock()) if started_ns is None else started_ns
        self._lock = threading.Lock()
        self.last_origin: dict[str, int] = {}  # registered provider -> newest origin seen
        self._registered = [p.provider for p in definitions.providers]
        self._newest = 0  # newest origin of any provider (the event clock)
        self._window: deque[ProviderFacts] = deque()
        self._calendars = definitions.calendars
        self._silent = [
            (
                d,
                Lifecycle.of(
                    d,
                    self._severity_fn(d.id, d.severity),
                    # registered providers are few and must never be forgotten
                    ttl_ns=2**62,
                    max_instances=max_instances,
                ),
            )
            for d in definitions.alerts
            if isinstance(d, ProviderSilent)
        ]
        self._dlq = [
            (
                d,
                Lifecycle.of(
                    d,
                    self._severity_fn(d.id, d.severity),
                    ttl_ns=max(d.window_ns * 2, d.keep_firing_for_ns + d.window_ns),
                    max_instances=max_instances,
                ),
            )
            for d in definitions.alerts
            if isinstance(d, DlqRate)
        ]
        self._window_ns = max((d.window_ns for d, _ in self._dlq), default=0)
        context = WatchContext(definitions, self._severity_fn, max_instances)
        self._plugins: list[tuple[str, str, WatchDetector]] = [
            (d.kind, d.id, make(d, context))
            for d in definitions.alerts
            if (make := KINDS[d.kind].watch) is not None
        ]

    def clock(self) -> int:
        """Now: the wall clock, or with ``event_clock`` the newest origin time seen."""
        if self.event_clock:
            return max(self._newest, self.started_ns)
        return self._wall()

    def _severity_fn(self, alert_id: str, defined: str) -> Callable[[Labels, int], str]:
        def calendar_of(provider: str) -> Calendar | None:
            p = self.definitions.provider(provider)
            return self._calendars.get(p.calendar) if p and p.calendar else None

        return severity_fn(
            alert_id, defined, self.definitions, calendar_of, self.dismissals, self.rates
        )

    def add(self, facts: ProviderFacts) -> None:
        """One gate's batch summary; judges the providers at once (a resumed provider
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
            if self._dlq:
                self._window.append(facts)
            if self.dismissals is not None:
                self.rates.add(facts.events, facts.at_ns)
            if self.event_clock:
                out = self._judge_silence(self.clock())
            else:  # resolve a provider that came back at once; the ticker finds new silences
                out = self._judge_silence(self.clock(), only=seen)
            for kind, alert_id, detector in self._plugins:
                part = facts.kinds.get(kind)
                if part is None:
                    continue
                try:
                    out += detector.add(facts.at_ns, part)
                except Exception:  # facts may come over a topic: one bad part is not fatal
                    log.exception("alert %s: facts from %r not usable", alert_id, facts.source)
        if out:
            self.deliver(out)

    def tick(self, now_ns: int | None = None) -> list[Transition]:
        """Judge every registered provider at ``now_ns`` (default: the clock) and deliver."""
        now = self.clock() if now_ns is None else now_ns
        with self._lock:
            out = self._judge_silence(now)
            out += self._judge_dlq(now)
            for _kind, _id, detector in self._plugins:
                out += detector.tick(now)
        if out:
            self.deliver(out)
        return out

    def silence_ns(self, provider: str, now_ns: int) -> int:
        """Time since the provider's newest event (since the watch started if never seen)."""
        return now_ns - self.last_origin.get(provider, self.started_ns)

    def _judge_silence(self, now: int, only: Mapping[str, int] | None = None) -> list[Transition]:
        # Every registered provider (a provider absent from the facts is exactly the one that
        # may be silent), or only those named in ``only`` that hold an alert instance.
        out: list[Transition] = []
        for d, life in self._silent:
            if only is not None and not life.instances:
                continue
            for p in self.definitions.providers:
                if only is not None and (
                    p.provider not in only
                    or ((("provider", p.provider), ("venue", p.venue)) not in life.instances)
                ):
                    continue
                if not d.scope.matches(p.provider, p.venue):
                    continue
                out += self._silence_sample(d, life, p, now)
        return out

    def _silence_sample(
        self, d: ProviderSilent, life: Lifecycle, p: ExpectedProvider, now: int
    ) -> list[Transition]:
        labels: Labels = (("provider", p.provider), ("venue", p.venue))
        gap = self.silence_ns(p.provider, now)
        threshold = d.threshold_ns if d.threshold_ns is not None else p.max_gap_ns
        clear = min(d.clear_ns, threshold) if d.clear_ns is not None else threshold
        held = labels in life.instances and life.instances[labels].cleared is None
        active = gap > (clear if held else threshold)
        cal = self._calendars.get(p.calendar) if p.calendar else None
        if cal is not None and not in_session(cal, now):
            active = False  # a closed market is not a silent provider (evaluation step 1)
        # The condition began when the gap crossed the threshold, not when it was noticed.
        at = now
        if active and not held:  # never dated after now (the lifecycle's clock)
            at = min(self.last_origin.get(p.provider, self.started_ns) + threshold, now)
        figures = {
            "seconds_since_last_event": round(gap / SECOND_NS, 3),
            "last_event_ns": self.last_origin.get(p.provider, 0),
            "max_gap_s": threshold / SECOND_NS,
        }
        out = life.observe(labels, at, active=active, value=gap / SECOND_NS, figures=figures)
        if active:
            out += life.tick(now)
        return out

    def _judge_dlq(self, now: int) -> list[Transition]:
        if not self._dlq:
            return []
        while self._window and now - self._window[0].at_ns > self._window_ns:
            self._window.popleft()
        out: list[Transition] = []
        for d, life in self._dlq:
            events: dict[str, int] = {}
            dead: dict[tuple[str, str], int] = {}
            for f in self._window:
                if now - f.at_ns > d.window_ns:
                    continue
                for p, n in f.events.items():
                    events[p] = events.get(p, 0) + n
                for k, n in f.dead.items():
                    dead[k] = dead.get(k, 0) + n
            seen: set[Labels] = set()
            for (p, rule), n in dead.items():
                reg = self.definitions.provider(p)
                if not d.scope.matches(p, reg.venue if reg else ""):
                    continue
                total = events.get(p, 0)
                if total < d.min_events:
                    continue
                # a record too broken to name its provider still has a provider label
                labels: Labels = (("provider", p or UNNAMED_PROVIDER), ("rule", rule))
                seen.add(labels)
                rate = n / total
                figures = {"dead_letters": n, "events": total, "rate": round(rate, 4)}
                out += life.observe(labels, now, value=rate, figures=figures)
            for labels in list(life.instances):
                if labels not in seen:  # no dead letters left in the window
                    out += life.observe(labels, now, value=0.0)
            out += life.tick(now)
        return out


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
