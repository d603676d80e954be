"""The sidecars: the inline gate, the passive tap, the recorder (trail topic → store), and the
in-app stamping SDK.

May import ``audit`` and ``rules``.
"""

from stampline._common import imported_as_part_of_stampline
from stampline.collectors._dlq import (
    H_CLASS,
    H_MESSAGE,
    H_OFFSET,
    H_ORIGINAL_HEADERS,
    H_ORIGINAL_KEY,
    H_ORIGINAL_SHA256,
    H_ORIGINAL_SIZE,
    H_PARTITION,
    H_REASON,
    H_RULE_ID,
    H_RULE_VERSION,
    H_STAGE,
    H_TOPIC,
    H_TRUNCATED,
    dead_letter_headers,
)
from stampline.collectors._eventtime import EventTime
from stampline.collectors._gate import Gate, GateSettings, GateStats
from stampline.collectors._heads import read_heads
from stampline.collectors._ids import key_event_id, new_event_id, source_event_id
from stampline.collectors._kafka import admin_config, consumer_config, producer_config, take
from stampline.collectors._metrics import MetricsSettings, SidecarMetrics
from stampline.collectors._preflight import Limits
from stampline.collectors._recorder import (
    Recorder,
    RecorderMetrics,
    RecorderSettings,
    RecorderStats,
)
from stampline.collectors._sdk import StageContext, stage
from stampline.collectors._stamps import (
    CONTRACT_VERSION,
    H_CLOCK_ERR,
    H_EVENT_ID,
    H_INGEST,
    H_LATE,
    H_ORIGIN,
    H_PARENT_STAMPS,
    H_PARENTS,
    H_STAMP,
    H_TRACEPARENT,
    H_VERSION,
    StageStamp,
    Stamps,
    append_stamp,
    read_stamps,
)
from stampline.collectors._tap import Tap, TapSettings, TapStats, hop_latencies
from stampline.collectors._trailrows import TrailSink
from stampline.collectors._trailtopic import DEFAULT_TRAIL_TOPIC, TrailTopic
from stampline.collectors.exceptions import (
    BrokerCheckError,
    CollectorError,
    DeliveryError,
    StampError,
)

__all__ = [
    "CONTRACT_VERSION",
    "DEFAULT_TRAIL_TOPIC",
    "H_CLASS",
    "H_CLOCK_ERR",
    "H_EVENT_ID",
    "H_INGEST",
    "H_LATE",
    "H_MESSAGE",
    "H_OFFSET",
    "H_ORIGIN",
    "H_ORIGINAL_HEADERS",
    "H_ORIGINAL_KEY",
    "H_ORIGINAL_SHA256",
    "H_ORIGINAL_SIZE",
    "H_PARENTS",
    "H_PARENT_STAMPS",
    "H_PARTITION",
    "H_REASON",
    "H_RULE_ID",
    "H_RULE_VERSION",
    "H_STAGE",
    "H_STAMP",
    "H_TOPIC",
    "H_TRACEPARENT",
    "H_TRUNCATED",
    "H_VERSION",
    "BrokerCheckError",
    "CollectorError",
    "DeliveryError",
    "EventTime",
    "Gate",
    "GateSettings",
    "GateStats",
    "Limits",
    "MetricsSettings",
    "Recorder",
    "RecorderMetrics",
    "RecorderSettings",
    "RecorderStats",
    "SidecarMetrics",
    "StageContext",
    "StageStamp",
    "StampError",
    "Stamps",
    "Tap",
    "TapSettings",
    "TapStats",
    "TrailSink",
    "TrailTopic",
    "admin_config",
    "append_stamp",
    "consumer_config",
    "dead_letter_headers",
    "hop_latencies",
    "key_event_id",
    "new_event_id",
    "producer_config",
    "read_heads",
    "read_stamps",
    "source_event_id",
    "stage",
    "take",
]

# Never as a top-level `collectors` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
