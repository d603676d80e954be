"""The sidecars: the inline gate, the passive tap, and the in-app stamping SDK.

May import ``audit`` and ``rules``.
"""

from collectors._dlq import (
    H_CLASS,
    H_MESSAGE,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_RULE_ID,
    H_RULE_VERSION,
    H_STAGE,
    H_TOPIC,
    dead_letter_headers,
)
from collectors._gate import Gate, GateSettings, GateStats, TrailSink
from collectors._ids import new_event_id, source_event_id
from collectors._kafka import consumer_config, producer_config, take
from collectors._sdk import StageContext, stage
from collectors._stamps import (
    CONTRACT_VERSION,
    H_CLOCK_ERR,
    H_EVENT_ID,
    H_INGEST,
    H_ORIGIN,
    H_PARENTS,
    H_STAMP,
    H_TRACEPARENT,
    H_VERSION,
    StageStamp,
    Stamps,
    append_stamp,
    read_stamps,
)
from collectors._tap import Tap, TapSettings, TapStats
from collectors.exceptions import CollectorError, DeliveryError, StampError

__all__ = [
    "CONTRACT_VERSION",
    "H_CLASS",
    "H_CLOCK_ERR",
    "H_EVENT_ID",
    "H_INGEST",
    "H_MESSAGE",
    "H_OFFSET",
    "H_ORIGIN",
    "H_PARENTS",
    "H_PARTITION",
    "H_REASON",
    "H_RULE_ID",
    "H_RULE_VERSION",
    "H_STAGE",
    "H_STAMP",
    "H_TOPIC",
    "H_TRACEPARENT",
    "H_VERSION",
    "CollectorError",
    "DeliveryError",
    "Gate",
    "GateSettings",
    "GateStats",
    "StageContext",
    "StageStamp",
    "StampError",
    "Stamps",
    "Tap",
    "TapSettings",
    "TapStats",
    "TrailSink",
    "append_stamp",
    "consumer_config",
    "dead_letter_headers",
    "new_event_id",
    "producer_config",
    "read_stamps",
    "source_event_id",
    "stage",
    "take",
]
