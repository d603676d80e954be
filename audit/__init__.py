"""The system of record: observation trail, ClickHouse schema, store backends and replay.

Imports nothing else of stampline's.
"""

from stampline._common import imported_as_part_of_stampline
from stampline.audit._batchcheck import check_batch
from stampline.audit._chdb import ChdbStore, store_holder
from stampline.audit._clock import (
    ClockBound,
    ClockSource,
    clock_error_bound,
    parse_chronyc_tracking,
    read_clock_bound,
)
from stampline.audit._heads import HEAD_SCHEMA, PublishedHead
from stampline.audit._hotspots import heatmap, hotspots
from stampline.audit._ledger import BatchFinding, VerifyReport
from stampline.audit._live import LIVE_FILE, TOKEN_FILE, LiveEndpoint, LiveStore, find_live
from stampline.audit._model import (
    AUTHORITY_STAMPER,
    AUTHORITY_TAP,
    BROKER_TIME_TYPES,
    PREV_ORIGIN,
    TAP_SIGHTING,
    UNKNOWN_PARENT,
    BrokerTimeType,
    DeadLetter,
    Observation,
    Outcome,
    ParentStamp,
    broker_clock,
    broker_time_type,
    decode_parent_stamps,
    encode_parent_stamps,
)
from stampline.audit._queries import (
    DEFAULT_SEQUENCE_KEY,
    completeness,
    latency_flags,
    parse_sequence_key,
    providers_compare,
)
from stampline.audit._readonly import QueryLimits, ReadOnlyError
from stampline.audit._replay import (
    EventTrail,
    Sighting,
    Stamp,
    Timeline,
    Verdict,
    format_ns,
    normalise_id,
    replay_decision,
    replay_event,
    short_ids,
)
from stampline.audit._schema import MigrationReport, Retention, check_database_name
from stampline.audit._server import ClickHouseStore
from stampline.audit._signing import (
    SigningKeyError,
    generate_key,
    load_private_key,
    load_public_key,
)
from stampline.audit._store import LOCAL_CHAIN, ChainHead, Store, canonical_table
from stampline.audit._trailformat import (
    DEAD_LETTER_SCHEMA,
    TRAIL_FORMAT_VERSION,
    TRAIL_MESSAGE_BYTES,
    TrailFormatError,
    TrailMessage,
    TrailRow,
    dead_letter_table,
    decode_trail_message,
    encode_trail_messages,
    message_rows,
    trail_fields,
    trail_row,
)
from stampline.audit._trailof import (
    UNCONTESTED,
    contested_keys,
    contested_params,
    one_per_stage,
)
from stampline.audit.exceptions import AuditError, BatchRefusedError, NotFoundError, StoreError

__all__ = [
    "AUTHORITY_STAMPER",
    "AUTHORITY_TAP",
    "BROKER_TIME_TYPES",
    "DEAD_LETTER_SCHEMA",
    "DEFAULT_SEQUENCE_KEY",
    "HEAD_SCHEMA",
    "LIVE_FILE",
    "LOCAL_CHAIN",
    "PREV_ORIGIN",
    "TAP_SIGHTING",
    "TOKEN_FILE",
    "TRAIL_FORMAT_VERSION",
    "TRAIL_MESSAGE_BYTES",
    "UNCONTESTED",
    "UNKNOWN_PARENT",
    "AuditError",
    "BatchFinding",
    "BatchRefusedError",
    "BrokerTimeType",
    "ChainHead",
    "ChdbStore",
    "ClickHouseStore",
    "ClockBound",
    "ClockSource",
    "DeadLetter",
    "EventTrail",
    "LiveEndpoint",
    "LiveStore",
    "MigrationReport",
    "NotFoundError",
    "Observation",
    "Outcome",
    "ParentStamp",
    "PublishedHead",
    "QueryLimits",
    "ReadOnlyError",
    "Retention",
    "Sighting",
    "SigningKeyError",
    "Stamp",
    "Store",
    "StoreError",
    "Timeline",
    "TrailFormatError",
    "TrailMessage",
    "TrailRow",
    "Verdict",
    "VerifyReport",
    "broker_clock",
    "broker_time_type",
    "canonical_table",
    "check_batch",
    "check_database_name",
    "clock_error_bound",
    "completeness",
    "contested_keys",
    "contested_params",
    "dead_letter_table",
    "decode_parent_stamps",
    "decode_trail_message",
    "encode_parent_stamps",
    "encode_trail_messages",
    "find_live",
    "format_ns",
    "generate_key",
    "heatmap",
    "hotspots",
    "latency_flags",
    "load_private_key",
    "load_public_key",
    "message_rows",
    "normalise_id",
    "one_per_stage",
    "parse_chronyc_tracking",
    "parse_sequence_key",
    "providers_compare",
    "read_clock_bound",
    "replay_decision",
    "replay_event",
    "short_ids",
    "store_holder",
    "trail_fields",
    "trail_row",
]

# Never as a top-level `audit` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
