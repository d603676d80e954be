"""The in-app SDK: a customer's Python stage stamps what it produces.

    with stage("risk", quote, producer=producer) as st:
        decision = decide(quote)
        st.produce("decisions", value=decision)      # a derived event: new id, lineage = [quote]

    with stage("enrich", msg, producer=producer) as st:
        st.forward("enriched", msg, value=enriched)   # the same event, one more stage stamp

The stage stamp records when the stage took its inputs in (entering the block) and when it
let the output go (the produce call), so stage time and hop latency both come out of it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from collectors._ids import new_event_id
from collectors._stamps import (
    Headers,
    StageStamp,
    Stamps,
    append_stamp,
    check_stage_name,
    headers_of,
    new_traceparent,
    read_stamps,
    trace_of,
)

DEFAULT_CLOCK_ERR_NS = 1_000_000


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
    ) -> None:
        self.name = check_stage_name(name)
        self.received_ns = time.time_ns()
        self.inputs = [read_stamps(headers_of(r)) for r in inputs]
        self.produced: list[str] = []
        self._producer = producer
        self._clock_err_ns = clock_err_ns
        self._host = host

    @property
    def parent_ids(self) -> tuple[str, ...]:
        """Event ids of the stamped inputs, in the order given, without repeats."""
        return tuple(dict.fromkeys(s.event_id for s in self.inputs if s is not None))

    def _stamp(self, emitted: int) -> StageStamp:
        return StageStamp(self.name, self.received_ns, emitted, self._clock_err_ns, self._host)

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
            traceparent=new_traceparent(event_id, trace_of(first.traceparent) if first else None),
        )
        self._producer.produce(
            topic, value=value, key=key, headers=[*(headers or []), *stamps.headers()], **kwargs
        )
        self.produced.append(event_id)
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
        headers = append_stamp(headers_of(record), self._stamp(time.time_ns()))
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
    clock_err_ns: int = DEFAULT_CLOCK_ERR_NS,
    host: str | None = None,
) -> Iterator[StageContext]:
    """Open a stage over ``inputs``; what it produces inside the block is stamped.

    Raises:
        ValueError: ``name`` is not a valid stage name.
        StampError: an input carries malformed stamp headers.
    """
    yield StageContext(name, inputs, producer, clock_err_ns, host or socket.gethostname())
