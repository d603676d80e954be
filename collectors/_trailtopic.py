"""The producer side of the trail topic: a sidecar's trail rows become trail messages.

The gate and the tap hand their rows to a ``TrailTopic`` instead of writing the store; the
messages go out on the sidecar's own producer (the gate's, inside its transaction when
``exactly_once``), so the inline path waits on the broker only, never on ClickHouse. The
recorder (``stampline.collectors._recorder``) writes them to the store. Format:
``stampline.audit._trailformat``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from confluent_kafka import Producer

from stampline.audit import (
    TRAIL_MESSAGE_BYTES,
    DeadLetter,
    dead_letter_table,
    encode_trail_messages,
)

if TYPE_CHECKING:
    from stampline._native import GateProducer

DEFAULT_TRAIL_TOPIC = "stampline.trail"


@dataclass(frozen=True, slots=True)
class TrailTopic:
    """Where a sidecar sends its trail: ``topic`` on the sidecar's own broker.

    ``source`` names the sidecar in each message (its key and ``stampline.trail.source``).
    """

    topic: str = DEFAULT_TRAIL_TOPIC
    source: str = "stampline"
    max_message_bytes: int = TRAIL_MESSAGE_BYTES

    def produce(
        self,
        producer: Producer | GateProducer,
        observations: pa.Table,
        dead: Sequence[DeadLetter],
        on_delivery: Callable[[Any, Any], None],
    ) -> int:
        """Produce ``observations`` and ``dead`` as trail messages; returns how many.

        Waits (serving delivery reports) while the producer's local queue is full: the
        broker's backpressure, the only kind the inline path accepts.
        """
        key = self.source.encode("utf-8", "replace")
        sent = 0
        parts: list[tuple[Any, pa.Table]] = [("observations", observations)]
        if dead:
            parts.append(("dead_letters", dead_letter_table(dead)))
        for kind, table in parts:
            for message in encode_trail_messages(kind, table, self.source, self.max_message_bytes):
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            message.value,
                            key,
                            headers=message.headers,
                            on_delivery=on_delivery,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                sent += 1
        return sent
