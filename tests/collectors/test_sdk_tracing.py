"""The SDK's stage is an OpenTelemetry span and propagates W3C traceparent through Kafka."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from stampline.collectors import H_TRACEPARENT, stage
from tests.collectors.test_sdk_and_tap import _consume, _stamped_inputs
from tests.helpers import produce


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_stage_span_continues_the_input_trace_links_the_others_and_rides_in_headers(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A stage over three stamped inputs exports one span: child of the first input's
    traceparent, linked to the other two; the decision it produces through a real producer
    carries that span's traceparent."""
    provider, exporter = spans
    clean, decisions = make_topics("clean", "decisions", partitions=1)
    inputs = _stamped_inputs(3)
    produce(bootstrap, clean, [(None, b"q", s.headers()) for s in inputs])
    messages = _consume(bootstrap, clean, 3)
    producer = Producer({"bootstrap.servers": bootstrap})
    with stage("risk", *messages, producer=producer, tracer=provider.get_tracer("test")) as st:
        event_id = st.produce(decisions, value=b"decision")
    assert producer.flush(10) == 0
    (span,) = exporter.get_finished_spans()
    (out,) = _consume(bootstrap, decisions, 1)
    traceparent = dict(out.headers() or [])[H_TRACEPARENT]
    assert traceparent is not None
    ctx = span.get_span_context()
    assert traceparent.decode() == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    first_trace, first_span = inputs[0].traceparent.split("-")[1:3]
    assert f"{ctx.trace_id:032x}" == first_trace
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == first_span
    assert span.kind is SpanKind.CONSUMER
    assert sorted(f"{link.context.trace_id:032x}" for link in span.links) == sorted(
        s.traceparent.split("-")[1] for s in inputs[1:]
    )
    assert span.name == "stage risk"
    assert span.attributes is not None
    assert span.attributes["stampline.stage"] == "risk"
    assert [e.attributes["stampline.event_id"] for e in span.events if e.attributes] == [event_id]


def test_forward_replaces_traceparent_with_the_stage_span(
    bootstrap: str,
    make_topics: Callable[..., list[str]],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A forwarded event keeps one traceparent header, now naming the stage's span."""
    provider, exporter = spans
    clean, enriched = make_topics("clean", "enriched", partitions=1)
    (inp,) = _stamped_inputs(1)
    produce(bootstrap, clean, [(None, b"q", inp.headers())])
    (msg,) = _consume(bootstrap, clean, 1)
    producer = Producer({"bootstrap.servers": bootstrap})
    with stage("enrich", msg, producer=producer, tracer=provider.get_tracer("test")) as st:
        st.forward(enriched, msg)
    assert producer.flush(10) == 0
    (span,) = exporter.get_finished_spans()
    (out,) = _consume(bootstrap, enriched, 1)
    values = [v for k, v in out.headers() or [] if k == H_TRACEPARENT]
    ctx = span.get_span_context()
    assert values == [f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01".encode()]


def test_a_failing_stage_records_the_error_on_its_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """An exception inside the block ends the span with an error status and is re-raised."""
    provider, exporter = spans
    with (
        pytest.raises(RuntimeError, match="boom"),
        stage("risk", producer=Producer({}), tracer=provider.get_tracer("test")),
    ):
        raise RuntimeError("boom")
    (span,) = exporter.get_finished_spans()
    assert not span.status.is_ok
    assert [e.name for e in span.events] == ["exception"]
