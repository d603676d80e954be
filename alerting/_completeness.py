"""Events lost between two stages, judged where every stage's rows meet: the engine of the
kinds with a ``stage_loss`` (``AlertKind.stage_loss`` gives each definition's stages, grace
and window; the rest below is the engine's).

The recorder writes every stage's trail rows, so it is the one place that sees an event at
``from_stage`` (A) and, or not, at ``to_stage`` (B): the detector runs there, once per
written observations table (:meth:`CompletenessDetector.observe_table`), and on the
recorder's quiet polls (:meth:`~CompletenessDetector.tick`).

**Event time.** An event's time is its A sighting's ``received``. Each trail source — a
(stage, host) pair — has a clock: the newest ``received`` it reported. The *watermark* of a
stage pair is the minimum of its sources' clocks, so one lagging gate, tap or trail
partition holds judging back instead of turning its late rows into losses. A source whose
clock has not moved for ``idle`` (wall time) is left out of the minimum, as Flink's
``withIdleness`` leaves out an idle split: a stage that stopped reporting (it crashed, or
drops everything) must not stop the judging of the others. A stage never seen at all
counts as idle once the detector has run for ``idle``. When every source of a pair is idle,
the pair's time moves on by ``idle`` past its newest row: nothing more came, so what waited
is judged.

**Judging.** An A sighting waits until the watermark passes its time + ``grace``; seen at B
by then, it arrived, else it is *lost*. Waiting events are judged in arrival order (close
to time order; one that came out of order waits behind a later one: judged a little late,
never early), which keeps the cost to about 1 µs per trail row. B sightings that come
before the A sighting (another partition, read first) are remembered until their A comes
or they age out; events judged recently are remembered too, so a duplicate A row (a gate
re-sending its trail after a crash, a tap reading back the gate's stamp) is not judged
twice. Dead-lettered events are not expected at B and are ignored.

**One alert per fault.** Judged events are counted per provider and stage pair in buckets of
A time; each definition samples, per provider, the lost fraction over its ``window`` ending
at the judged frontier (watermark − grace) into a :class:`~alerting.Lifecycle` (threshold
``threshold``): one instance per (provider, venue, from_stage, to_stage), whatever the
number of events lost, with the counts as figures (``lost``, ``judged``).

**Bounded.** At most ``max_pending`` events wait per stage pair (past it the oldest is
dropped unjudged and counted in ``unjudged``: never called lost on no evidence); remembered
B sightings and judged ids are capped the same way and forgotten past 2 × ``grace``; counts
older than the longest window are dropped; sources silent for ``source_ttl`` are forgotten;
the lifecycles have their cap and TTL.

**Restart.** The state lives in memory, so a recorder that starts (after a crash, a deploy,
``stampline run`` restarting it) rebuilds it before it reads the trail:
:meth:`~CompletenessDetector.seed` replays the stored trail rows of the watched stages from
the last :meth:`~CompletenessDetector.seed_horizon_ns` before the trail's newest row (at most
2 × ``max_pending`` rows per stage pair, the newest), in time order and in slices of event
time, through the same code as live tables, on a clock that follows the rows' times (so a
source that went quiet is idle as it was live). Its transitions are checked against the
alert history (what was notified of each instance): only what was never notified is
delivered; a pending instance the history says fired is taken as firing; and a live
transition no later in event time than what the history already holds for its instance (the
tail a stopped detector had judged once every source was idle, judged again) is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stampline._common import SECOND_NS
from stampline.alerting._definitions import AlertsFile
from stampline.alerting._detectors import Deliver, Judging
from stampline.alerting._history import last_states
from stampline.alerting._kinds import KINDS
from stampline.alerting._kinds._kind import Alert, StageLoss
from stampline.alerting._learning import DismissalBook
from stampline.alerting._lifecycle import Labels, Lifecycle, Transition, fingerprint
from stampline.audit import AuditError, Store

log = logging.getLogger("stampline.alerting")

_COLUMNS = ("event_id", "stage", "received", "host", "provider", "outcome")
_SCHEMA = pa.schema([(c, pa.int64() if c == "received" else pa.string()) for c in _COLUMNS])
# The trail rows a seeding replays: the newest first (a LIMIT keeps the newest), as the
# recorder hands live tables over (event ids as text, times as integer nanoseconds).
_SEED_ROWS = """
SELECT toString(o.event_id) AS event_id, toString(o.stage) AS stage,
       toUnixTimestamp64Nano(o.received) AS received, toString(o.host) AS host,
       toString(o.provider) AS provider, toString(o.outcome) AS outcome
FROM {db}.observations AS o
WHERE o.received >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')
  AND o.stage IN {stages:Array(String)} AND startsWith(o.chain_id, {chains:String})
ORDER BY o.received DESC LIMIT {limit:UInt64}"""
# The trail's newest row, from the ledger (one row per written batch: cheap on any store).
_SEED_NEWEST = """
SELECT count() AS n, toUnixTimestamp64Nano(max(last_received)) AS newest
FROM {db}.ledger WHERE kind = 'observations' AND startsWith(chain_id, {chains:String})"""


@dataclass(frozen=True, slots=True)
class SeedReport:
    """What :meth:`CompletenessDetector.seed` rebuilt from the store."""

    rows: int  # trail rows replayed
    truncated: bool  # the row limit left the horizon's oldest rows out
    horizon_ns: int
    delivered: int  # transitions of the replay never notified before: delivered
    suppressed: int  # transitions of the replay already notified: dropped
    held: int  # pending instances the history says fired: taken as firing
    history: bool  # the alert history was read (else nothing of the replay is delivered)
    seconds: float


@dataclass(slots=True)
class _Source:
    newest: int  # newest ``received`` reported (event time)
    moved: int  # wall time it last moved


@dataclass(slots=True)
class _Pair:
    """One (from_stage, to_stage) and the definitions judged over it (``losses``: what their
    kind's ``stage_loss`` says of each, in the same order)."""

    a: str
    b: str
    grace: int
    definitions: list[tuple[Alert, Lifecycle]]
    losses: list[StageLoss]
    bucket: int  # ns of A time per count bucket
    horizon: int  # ns of counts kept behind the judged frontier
    # id -> (t_a, provider), in arrival order (close to time order; see ``_judge_all``)
    pending: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict)
    early: dict[str, int] = field(default_factory=dict)  # seen at B before A: id -> t_b
    done: set[str] = field(default_factory=set)  # judged recently (this generation)
    done_before: set[str] = field(default_factory=set)  # the generation before
    generation: int = 0  # event time the current generation started
    counts: dict[str, dict[int, list[int]]] = field(default_factory=dict)  # provider -> b -> [j, l]
    watermark: int = 0
    lost_total: int = 0
    judged_total: int = 0


class CompletenessDetector(Judging):
    """The definitions of a deployment judged by stage pair (their kind has a
    ``stage_loss``), fed by the recorder.

    Not thread-safe: one caller thread (the recorder's). ``deliver`` receives transitions
    (a :class:`~alerting.Dispatcher`).
    """

    def __init__(
        self,
        definitions: AlertsFile,
        deliver: Deliver,
        *,
        wall: Callable[[], int] = time.monotonic_ns,
        idle_ns: int = 30 * SECOND_NS,
        max_pending: int = 200_000,
        source_ttl_ns: int = 3600 * SECOND_NS,
        ttl_ns: int = 3600 * SECOND_NS,
        max_instances: int = 10_000,
        dismissals: DismissalBook | None = None,
    ) -> None:
        super().__init__(definitions, deliver, dismissals)
        self.wall = wall
        self.idle_ns = idle_ns
        self.max_pending = max_pending
        self.source_ttl_ns = source_ttl_ns
        self.started = wall()
        self.unjudged = 0  # events dropped unjudged past max_pending
        self.errors = 0
        self.max_instances = max_instances
        self.seeded: SeedReport | None = None
        self.suppressed = 0  # live transitions dropped as notified before a restart
        # fingerprint -> event time up to which its instance was notified before a restart
        # (the alert history read by `seed`); dropped once every pair's judging is past it
        self._notified: dict[str, int] = {}
        self._notified_until = 0
        self._venue = {p.provider: p.venue for p in definitions.providers}
        self._sources: dict[tuple[str, str], _Source] = {}
        pairs: dict[tuple[str, str], list[tuple[Alert, StageLoss]]] = {}
        for d in definitions.alerts:
            stage_loss = KINDS[d.kind].stage_loss
            if stage_loss is not None:
                loss = stage_loss(d)
                pairs.setdefault((loss.a, loss.b), []).append((d, loss))
        self.pairs: list[_Pair] = []
        for (a, b), defs in pairs.items():
            lives = [
                (
                    d,
                    Lifecycle.of(
                        d,
                        self._severity_fn(d.id, d.severity),
                        ttl_ns=ttl_ns,
                        max_instances=max_instances,
                    ),
                )
                for d, _loss in defs
            ]
            # The pair's events wait for its longest grace; counts cover its longest window.
            window = max(loss.window_ns for _d, loss in defs)
            self.pairs.append(
                _Pair(
                    a,
                    b,
                    grace=max(loss.grace_ns for _d, loss in defs),
                    definitions=lives,
                    losses=[loss for _d, loss in defs],
                    bucket=max(window // 50, 100_000_000),
                    horizon=window,
                )
            )
        self._stages = sorted({s for p in self.pairs for s in (p.a, p.b)})

    @property
    def pending(self) -> int:
        """Events waiting to be judged, over every stage pair."""
        return sum(len(p.pending) for p in self.pairs)

    # ------------------------------------------------------------------ input

    def observe_table(self, table: pa.Table) -> None:
        """The observations one recorder write stored (the trail's canonical columns)."""
        if not self.pairs or table.num_rows == 0:
            return
        try:
            out = self._observe(table)
        except Exception:  # the recorder must never stop for an alerting bug
            self.errors += 1
            log.exception("completeness detector failed on a batch")
            return
        out = self._unnotified(out)
        if out:
            self.deliver(out)

    def tick(self) -> None:
        """Let wall time pass: idle sources leave the watermark, so judging goes on."""
        if not self.pairs:
            return
        try:
            out = self._judge_all()
        except Exception:
            self.errors += 1
            log.exception("completeness detector failed on a tick")
            return
        out = self._unnotified(out)
        if out:
            self.deliver(out)

    def _observe(self, table: pa.Table) -> list[Transition]:
        rows = table.select(list(_COLUMNS)).filter(
            pc.is_in(table.column("stage"), pa.array(self._stages))
        )
        if rows.num_rows == 0:
            return []
        now = self.wall()
        # Only accepted records move a source's clock: a dead letter's time (a tap reads the
        # producer's timestamp) may be anything, a day ahead included.
        accepted = rows.filter(pc.not_equal(rows.column("outcome"), "dead_lettered"))
        clocks = accepted.group_by(["stage", "host"]).aggregate([("received", "max")])
        for stage, host, newest in zip(
            clocks.column("stage").to_pylist(),
            clocks.column("host").to_pylist(),
            clocks.column("received_max").to_pylist(),
            strict=True,
        ):
            src = self._sources.get((stage, host))
            if src is None:
                self._sources[(stage, host)] = _Source(newest, now)
            elif newest > src.newest:
                src.newest, src.moved = newest, now
        stage, outcome = rows.column("stage"), rows.column("outcome")
        for pair in self.pairs:
            a = rows.filter(
                pc.and_(pc.equal(stage, pair.a), pc.not_equal(outcome, "dead_lettered"))
            )
            b = rows.filter(pc.equal(stage, pair.b))
            self._take(
                pair,
                a.column("event_id").to_pylist(),
                a.column("received").to_pylist(),
                a.column("provider").to_pylist(),
                b.column("event_id").to_pylist(),
                b.column("received").to_pylist(),
            )
        return self._judge_all()

    def _take(
        self,
        pair: _Pair,
        a_ids: list[str],
        a_times: list[int],
        a_providers: list[str],
        b_ids: list[str],
        b_times: list[int],
    ) -> None:
        """A sightings (dead letters left out), then B sightings, of one table. A first: a
        table holding both rows of one event (a tap's reading of the gate's stamp beside its
        own sighting) then matches within itself."""
        pending, early = pair.pending, pair.early
        arrived: dict[tuple[str, int], int] = {}  # (provider, bucket) -> events matched
        matched: list[str] = []
        bucket = pair.bucket
        for eid, t, provider in zip(a_ids, a_times, a_providers, strict=True):
            if eid in pending or eid in pair.done or eid in pair.done_before:
                continue
            if early.pop(eid, None) is not None:  # seen at B already: arrived
                key = (provider, t // bucket)
                arrived[key] = arrived.get(key, 0) + 1
                matched.append(eid)
                continue
            pending[eid] = (t, provider)
        while len(pending) > self.max_pending:
            pending.popitem(last=False)  # the oldest waiting: dropped unjudged, counted
            self.unjudged += 1
        for eid, t in zip(b_ids, b_times, strict=True):
            seen = pending.pop(eid, None)
            if seen is not None:
                key = (seen[1], seen[0] // bucket)
                arrived[key] = arrived.get(key, 0) + 1
                matched.append(eid)
            elif eid not in pair.done and eid not in pair.done_before:
                early[eid] = t
        while len(early) > self.max_pending:
            del early[next(iter(early))]  # the oldest remembered
        for (provider, k), n in arrived.items():
            c = pair.counts.setdefault(provider, {}).setdefault(k, [0, 0])
            c[0] += n
            pair.judged_total += n
        self._judged(pair, matched)

    def _judged(self, pair: _Pair, ids: list[str]) -> None:
        """Remember judged events (a duplicate sighting later is not judged again)."""
        pair.done.update(ids)
        if len(pair.done) > self.max_pending:  # bounded like the rest: start a generation
            pair.done_before, pair.done = pair.done, set()

    def _count(self, pair: _Pair, provider: str, t_a: int, *, lost: bool) -> None:
        c = pair.counts.setdefault(provider, {}).setdefault(t_a // pair.bucket, [0, 0])
        c[0] += 1
        c[1] += lost
        pair.judged_total += 1
        pair.lost_total += lost

    # ------------------------------------------------------------------ restart

    def seed_horizon_ns(self) -> int:
        """How far behind the trail's newest row a running detector still holds state: what
        :meth:`seed` reads. Derived from the definitions, because each term is a reason a
        row that old can still change what is judged or raised:

        - the watermark trails the newest row by up to ``idle`` (a source holds it back until
          it is left out as idle), and an event waits ``grace`` past it to be judged;
        - a judged event counts in the sampled fraction for ``window`` after that;
        - the lifecycle fires ``for`` after the condition's run began and holds a cleared
          firing instance ``keep_firing_for``: replaying the run from its start fires it at
          the same event time instead of later (which would be a second firing);
        - judged ids are remembered for two generations of 2 x ``grace`` (duplicates).
        """
        defs = [
            (d, loss)
            for pair in self.pairs
            for (d, _life), loss in zip(pair.definitions, pair.losses, strict=True)
        ]
        if not defs:
            return 0
        need = max(
            loss.grace_ns + max(loss.window_ns + d.for_ns + d.keep_firing_for_ns, 3 * loss.grace_ns)
            for d, loss in defs
        )
        return self.idle_ns + need

    def seed(self, store: Store, chains: str = "") -> SeedReport | None:
        """Rebuild, before the first live table, the state a detector that never stopped
        would hold: the trail rows of the watched stages that ``store`` holds (in chains
        whose id starts with ``chains``: the recorder passes ``<trail topic>/``) from
        :meth:`seed_horizon_ns` before the trail's newest row, at most 2 x ``max_pending``
        per stage pair (the newest), replayed in time order through the live code path.

        Alerts already raised are not raised again: the replay's transitions are checked
        against the alert history (``alert_history``, written by the delivery of the
        detector before the restart, directly or through the alerts topic) and only those
        that tell something never notified are delivered. Without a readable history none is
        (a loss is then missed rather than raised twice). Never raises: a failure is logged
        and counted in ``errors``, and the detector goes on with what it rebuilt.
        """
        if not self.pairs:
            return None
        began = time.monotonic()
        try:
            report, out = self._seed(store, chains, began)
        except Exception:  # the recorder must start whatever the store holds
            self.errors += 1
            log.exception("completeness detector could not seed from the store")
            return None
        self.seeded = report
        if out:
            self.deliver(out)
        log.info(
            "completeness seeded rows=%d truncated=%s horizon_s=%.1f pending=%d delivered=%d "
            "suppressed=%d held=%d history=%s seconds=%.3f",
            report.rows, report.truncated, report.horizon_ns / SECOND_NS, self.pending,
            report.delivered, report.suppressed, report.held, report.history, report.seconds,
        )  # fmt: skip
        return report

    def _seed(self, store: Store, chains: str, began: float) -> tuple[SeedReport, list[Transition]]:
        horizon = self.seed_horizon_ns()
        # Each pair holds at most max_pending waiting A sightings and as many B sightings seen
        # first: the newest rows are those, so this many rows per pair is what can matter.
        limit = 2 * self.max_pending * len(self.pairs)
        (top,) = store.query(_SEED_NEWEST, {"chains": chains})
        rows = pa.Table.from_batches([], _SCHEMA)
        newest = 0
        if int(top["n"]):
            newest = int(top["newest"])
            found = store.query_arrow(
                _SEED_ROWS,
                {"since": newest - horizon, "stages": self._stages, "chains": chains,
                 "limit": limit},
            )  # fmt: skip
            rows = found.select(list(_COLUMNS)).cast(_SCHEMA).sort_by("received")
        ids = sorted({d.id for pair in self.pairs for d, _life in pair.definitions})
        notified: dict[str, tuple[str, int]] | None
        try:
            notified = last_states(store, ids, limit=self.max_instances * len(ids))
        except AuditError as exc:
            log.warning("completeness seeding without alert history (none of its alerts "
                        "delivered): %s", exc)  # fmt: skip
            notified = None
        replayed = self._replay(rows, newest) if rows.num_rows else []
        out, held = self._reconcile(replayed, notified)
        report = SeedReport(
            rows=rows.num_rows,
            truncated=rows.num_rows >= limit,
            horizon_ns=horizon,
            delivered=len(out),
            suppressed=len(replayed) - len(out),
            held=held,
            history=notified is not None,
            seconds=time.monotonic() - began,
        )
        return report, out

    def _replay(self, rows: pa.Table, newest: int) -> list[Transition]:
        """Observe ``rows`` (in time order) in slices of one count bucket of event time, each
        after a tick at its start (the recorder ticks when the trail is quiet), on a wall
        clock that follows the rows: sources idle and are forgotten as they did live. Then
        the sources' clocks are moved to the real wall clock, as old relative to now as they
        were to the trail's newest row."""
        real_wall, real_started = self.wall, self.started
        times = rows.column("received").to_numpy()
        first, end = int(times[0]), max(newest, int(times[-1]))
        now = [first]
        self.wall = lambda: now[0]
        self.started = first
        out: list[Transition] = []
        try:
            step = min(pair.bucket for pair in self.pairs)
            keys = (times - first) // step
            cuts = [0, *(np.flatnonzero(np.diff(keys)) + 1).tolist(), len(times)]
            for lo, hi in pairwise(cuts):
                now[0] = first + int(keys[lo]) * step
                out += self._judge_all()
                now[0] = int(times[hi - 1])
                out += self._observe(rows.slice(lo, hi - lo))
            now[0] = end  # the trail's newest row may be another stage's: time went on
            out += self._judge_all()
        finally:
            self.wall, self.started = real_wall, real_started
            wall_now = real_wall()
            for src in self._sources.values():
                src.moved = wall_now - max(0, end - src.moved)
        return out

    def _reconcile(
        self, replayed: list[Transition], notified: dict[str, tuple[str, int]] | None
    ) -> tuple[list[Transition], int]:
        """The replay's transitions never notified, and how many pending instances were
        taken as firing; keeps the history's times for :meth:`_unnotified`."""
        if notified is None:
            return [], 0
        known = dict(notified)
        out = [t for t in replayed if _news(known, t)]
        held = 0
        for pair in self.pairs:
            for d, life in pair.definitions:
                for labels in list(life.instances):
                    seen = known.get(fingerprint(d.id, labels))
                    if seen is not None and seen[0] == "firing" and life.hold(labels):
                        held += 1
        self._notified = {fp: at for fp, (_state, at) in notified.items()}
        self._notified_until = max(self._notified.values(), default=0)
        return out, held

    def _unnotified(self, out: list[Transition]) -> list[Transition]:
        """Live transitions, less those the history already covers: no later in event time
        than the last notified transition of their instance (judging that a detector stopped
        after idle judging does again, at the same event time)."""
        if not self._notified:
            return out
        keep = [t for t in out if t.at_ns > self._notified.get(t.fingerprint, -1)]
        self.suppressed += len(out) - len(keep)
        if all(p.watermark - p.grace > self._notified_until for p in self.pairs):
            self._notified = {}
        return keep

    # ------------------------------------------------------------------ judging

    def watermark(self, pair: _Pair, now: int | None = None) -> int | None:
        """The event time up to which every source of ``pair`` has reported (see the module
        docstring), or None while a stage has not reported and may still."""
        now = self.wall() if now is None else now
        live: list[int] = []
        every: list[int] = []
        for stage in (pair.a, pair.b):
            found = [s for (st, _h), s in self._sources.items() if st == stage]
            if not found and now - self.started < self.idle_ns:
                return None  # not heard from yet, and not for long
            for s in found:
                every.append(s.newest)
                if now - s.moved < self.idle_ns:
                    live.append(s.newest)
        if not every:
            return None
        # Every source idle: nothing has come for `idle`, so the pair's time moves on by that
        # much (all of it is final once `idle` >= grace; later rows are newer anyway).
        return min(live) if live else max(every) + self.idle_ns

    def _judge_all(self) -> list[Transition]:
        now = self.wall()
        self._forget_sources(now)
        out: list[Transition] = []
        for pair in self.pairs:
            wm = self.watermark(pair, now)
            if wm is None or wm <= pair.watermark:
                continue
            pair.watermark = wm
            frontier = wm - pair.grace
            # In arrival order, up to the first event not yet due: an event that arrived out
            # of order waits behind a later one (judged a little late, never early).
            pending, lost = pair.pending, []
            while pending:
                eid, (t, provider) = next(iter(pending.items()))
                if t > frontier:
                    break
                pending.popitem(last=False)
                self._count(pair, provider, t, lost=True)
                lost.append(eid)
            self._judged(pair, lost)
            self._age(pair, wm)
            out += self._sample(pair, frontier)
        return out

    def _age(self, pair: _Pair, wm: int) -> None:
        """Forget judged ids, early B sightings and counts that can no longer matter."""
        if wm - pair.generation >= 2 * pair.grace:
            pair.done_before, pair.done = pair.done, set()
            pair.generation = wm
            old = wm - 2 * pair.grace
            for eid in [e for e, t in pair.early.items() if t < old]:
                del pair.early[eid]
        oldest = (wm - pair.grace - pair.horizon) // pair.bucket
        for provider in list(pair.counts):
            buckets = pair.counts[provider]
            for k in [k for k in buckets if k < oldest]:
                del buckets[k]
            if not buckets:
                del pair.counts[provider]

    def _sample(self, pair: _Pair, frontier: int) -> list[Transition]:
        out: list[Transition] = []
        for (d, life), loss in zip(pair.definitions, pair.losses, strict=True):
            lo = (frontier - loss.window_ns) // pair.bucket
            hi = frontier // pair.bucket
            open_ = {dict(labels).get("provider", "") for labels in life.instances}
            # sorted: transitions judged together come out in one order in every process
            for provider in sorted(set(pair.counts) | open_):
                venue = self._venue.get(provider, "")
                if not d.scope.matches(provider, venue):
                    continue
                judged = lost = 0
                for k, (j, n) in pair.counts.get(provider, {}).items():
                    if lo < k <= hi:
                        judged += j
                        lost += n
                if not judged and provider not in open_:
                    continue
                labels: Labels = (
                    ("from_stage", pair.a),
                    ("provider", provider),
                    ("to_stage", pair.b),
                    ("venue", venue),
                )
                fraction = lost / judged if judged else 0.0
                figures = {
                    "lost": lost,
                    "judged": judged,
                    "window_s": loss.window_ns / SECOND_NS,
                    "grace_s": loss.grace_ns / SECOND_NS,
                }
                out += life.observe(labels, frontier, value=fraction, figures=figures)
            out += life.tick(frontier)
        return out

    def _forget_sources(self, now: int) -> None:
        for key in [k for k, s in self._sources.items() if now - s.moved >= self.source_ttl_ns]:
            del self._sources[key]


def _news(known: dict[str, tuple[str, int]], t: Transition) -> bool:
    """Whether ``t`` tells something not yet notified of its instance; ``known`` holds, per
    fingerprint, the last notified (state, event time) and takes ``t`` if so. Not news: a
    transition no later than the last notified one, the same state again, or anything but a
    resolve while the instance is notified as firing."""
    fp = t.fingerprint
    seen = known.get(fp)
    if seen is not None:
        state, at = seen
        if t.at_ns <= at or state == t.state or (state == "firing" and t.state != "resolved"):
            return False
    known[fp] = (t.state, t.at_ns)
    return True
