"""The in-app SDK: a customer's Python stage stamps what it produces.

    with stage("risk", quote, producer=producer) as st:
        decision = decide(quote)
        st.produce("decisions", value=decision)      # a derived event: new id, lineage = [quote]
                                                     # and where the quote last left a stage

    with stage("enrich", msg, producer=producer) as st:
        st.forward("enriched", msg, value=enriched)   # the same event, one more stage stamp

The stage stamp records when the stage took its inputs in (entering the block) and when it
let the output go (the produce call), so stage time and hop latency both come out of it. It
also carries the host's clock-error bound and where that bound came from (``src=``):

    clock = read_clock_bound("chrony", 1_000_000)    # audit: once, at start-up
    with stage("risk", quote, producer=producer, clock=clock) as st: ...

``clock_err_ns=N`` alone (or nothing: 1 ms) is a ``configured`` bound.

The block is also an OpenTelemetry span (the ``tracer`` given, else the global one): a
child of the first stamped input's ``traceparent`` and linked to every other input's, so a
trace follows an event across services. What the stage produces carries the span's W3C
``traceparent``; with no tracer provider configured the span is a no-op and the contract's
own ``traceparent`` is written instead. Works with any confluent-kafka ``Producer`` (or
anything with the same ``produce``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from stampline.audit import ClockBound, ParentStamp
from stampline.collectors._ids import new_event_id
from stampline.collectors._stamps import (
    BOUND_SOURCES,
    H_TRACEPARENT,
    Headers,
    StageStamp,
    Stamps,
    append_stamp,
    check_stage_name,
    headers_of,
    new_traceparent,
    parent_stamp_of,
    read_stamps,
    trace_of,
)

DEFAULT_CLOCK_ERR_NS = 1_000_000

_PROPAGATOR = TraceContextTextMapPropagator()


class _Record(Protocol):
    """What the SDK reads from an input: a confluent-kafka ``Message`` fits."""

    def headers(self) -> Any: ...


class _Producer(Protocol):
    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...


class StageContext:
    """The handle ``stage()`` yields: produce derived events or forward inputs, stamped."""

    def __init__(
        self,
        name: str,
        inputs: Sequence[_Record],
        producer: _Producer,
        clock_err_ns: int,
        host: str,
        span: Span | None = None,
        clock_source: str = "configured",
    ) -> None:
        self.name = check_stage_name(name)
        self.received_ns = time.time_ns()
        self.inputs = [read_stamps(headers_of(r)) for r in inputs]
        self.produced: list[str] = []
        self.span = span if span is not None else trace.INVALID_SPAN
        self._producer = producer
        self._clock_err_ns = clock_err_ns
        self._clock_source = clock_source if clock_source in BOUND_SOURCES else ""
        self._host = host

    def _traceparent(self) -> str | None:
        """The span's W3C traceparent, or None when the span is a no-op."""
        if not self.span.get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(self.span))
        return carrier.get(H_TRACEPARENT)

    @property
    def parent_ids(self) -> tuple[str, ...]:
        """Event ids of the stamped inputs, in the order given, without repeats."""
        return tuple(dict.fromkeys(s.event_id for s in self.inputs if s is not None))

    @property
    def parent_stamps(self) -> tuple[ParentStamp, ...]:
        """Aligned with ``parent_ids``: where each input last left a stage (its latest stamp),
        as its headers say. A derived event carries them, so its lineage hops (that stage ->
        this one) are known from its own trail row, without a join in the store."""
        first: dict[str, Stamps] = {}
        for s in self.inputs:
            if s is not None:
                first.setdefault(s.event_id, s)
        return tuple(parent_stamp_of(s) for s in first.values())

    def _stamp(self, emitted: int) -> StageStamp:
        return StageStamp(
            self.name,
            self.received_ns,
            emitted,
            self._clock_err_ns,
            self._host,
            self._clock_source,
        )

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        **kwargs: Any,
    ) -> str:
        """Produce a new event derived from this stage's inputs; returns its event id.

        The event is born now: its origin and ingestion are this instant, its lineage is the
        inputs' event ids, and its trace continues the first input's trace.
        """
        emitted = time.time_ns()
        event_id = new_event_id()
        first = next((s for s in self.inputs if s is not None), None)
        stamps = Stamps(
            event_id=event_id,
            origin_ns=emitted,
            ingest_ns=emitted,
            clock_err_ns=self._clock_err_ns,
            stages=(self._stamp(emitted),),
            parents=self.parent_ids,
            parent_stamps=self.parent_stamps,
            traceparent=self._traceparent()
            or new_traceparent(event_id, trace_of(first.traceparent) if first else None),
        )
        self._producer.produce(
            topic, value=value, key=key, headers=[*(headers or []), *stamps.headers()], **kwargs
        )
        self.produced.append(event_id)
        self.span.add_event(
            "produce", {"stampline.event_id": event_id, "messaging.destination": topic}
        )
        return event_id

    def forward(
        self,
        topic: str,
        record: Any,
        value: bytes | None = None,
        key: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        """Produce ``record`` on (same event, same headers) with this stage's stamp appended.

        ``value`` and ``key`` replace the record's own when given (an enriching stage).
        """
        headers = headers_of(record)
        traceparent = self._traceparent()
        if traceparent is not None:  # the event continues its trace through this span
            headers = [(k, v) for k, v in headers if k != H_TRACEPARENT]
            headers.append((H_TRACEPARENT, traceparent.encode()))
        headers = append_stamp(headers, self._stamp(time.time_ns()))
        self._producer.produce(
            topic,
            value=record.value() if value is None else value,
            key=record.key() if key is None else key,
            headers=headers,
            **kwargs,
        )


@contextmanager
def stage(
    name: str,
    *inputs: _Record,
    producer: _Producer,
    clock_err_ns: int | None = None,
    host: str | None = None,
    tracer: trace.Tracer | None = None,
    clock: ClockBound | None = None,
) -> Iterator[StageContext]:
    """Open a stage over ``inputs``; what it produces inside the block is stamped and traced.

    The stamp's clock-error bound and its source come from ``clock`` (``audit.ClockBound``,
    e.g. from ``audit.read_clock_bound``: configured, chrony or a fallback); without it,
    ``clock_err_ns`` (default 1 ms) is a ``configured`` bound.

    Raises:
        ValueError: ``name`` is not a valid stage name, or both ``clock`` and
            ``clock_err_ns`` are given.
        StampError: an input carries malformed stamp headers.
    """
    if clock is not None and clock_err_ns is not None:
        raise ValueError("give the bound as clock= or as clock_err_ns=, not both")
    if clock is not None:
        bound, source = clock.bound_ns, clock.kind
    else:
        bound = DEFAULT_CLOCK_ERR_NS if clock_err_ns is None else clock_err_ns
        source = "configured"
    ctx = StageContext(
        name, inputs, producer, bound, host or socket.gethostname(), clock_source=source
    )
    parents = [_span_context(s.traceparent) for s in ctx.inputs if s is not None]
    valid = [p for p in parents if p is not None]
    parent = trace.set_span_in_context(trace.NonRecordingSpan(valid[0])) if valid else None
    span = (tracer or trace.get_tracer("stampline.sdk")).start_span(
        f"stage {ctx.name}",
        context=parent,
        kind=SpanKind.CONSUMER if inputs else SpanKind.PRODUCER,
        links=[Link(p) for p in valid[1:]],
        attributes={
            "stampline.stage": ctx.name,
            "stampline.parents": list(ctx.parent_ids),
        },
        start_time=ctx.received_ns,
    )
    ctx.span = span
    try:
        yield ctx
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        raise
    finally:
        span.end()


def _span_context(traceparent: str) -> trace.SpanContext | None:
    if not traceparent:
        return None
    found = trace.get_current_span(_PROPAGATOR.extract({H_TRACEPARENT: traceparent}))
    context = found.get_span_context()
    return context if context.is_valid else None
