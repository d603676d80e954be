# The Rust extension module built from native/ (docs/native.md); absent when built without cargo.
import threading
from collections.abc import Callable, Mapping
from typing import Any

def digest_table(
    table: Any, order: Any, columns: list[tuple[str, str]], threads: int
) -> tuple[str, list[str]]: ...
def read_stamps_batch(
    batch: list[Any], stamps_type: type[Any], stage_type: type[Any]
) -> tuple[list[Any], list[tuple[int, str]]]: ...

# A record batch built in Rust (trail rows, typed columns); pa.record_batch(it) takes it
# without a copy.
class ArrowBatch:
    def __len__(self) -> int: ...
    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]: ...

# The record checker and typed decoder (native/src/check.rs, decode.rs; rules/_checker.py),
# and the contract check of its clean records (native/src/schema.rs).
def check_records(
    values: Any,
    fields: tuple[str, str, str, str],
    origin_factor: int,
    max_bytes: int,
    max_name_chars: int,
    schemas: list[Schema] = ...,
    wants: list[int] = ...,
    typed: list[str] = ...,
) -> tuple[
    bytes, list[str], list[str], list[int], bytes, bytes,
    list[tuple[bytes, bytes, bytes, list[str | None] | None]],
]: ...  # fmt: skip

class Schema:
    def __init__(self, text: str) -> None: ...

# librdkafka's log lines from the compiled clients (native/src/clientlog.rs): (Python
# logging level, text) oldest first, and how many were dropped for want of room.
def client_log() -> tuple[list[tuple[int, str]], int]: ...

# The compiled gate loop's Kafka side (native/src/kafka.rs; bench/native_loop.py).
def kafka_stamp_loop(
    bootstrap: str,
    group_id: str,
    source: str,
    sink: str,
    *,
    stage: str,
    host: str,
    clock_err_ns: int,
    batch_size: int = 1000,
    max_events: int = 0,
    idle_ms: int = 2000,
    start_ms: int = 30000,
    consumer: dict[str, str] | None = None,
    producer: dict[str, str] | None = None,
) -> dict[str, Any]: ...

# The tap's compiled loop (native/src/tap.rs, taprows.rs; collectors/_tap.py).

# A record handed back: (rows before it, topic, partition, offset, (timestamp type, ms), key,
# value, headers, why, whether its headers are unreadable: a name not UTF-8, headers None).
RawTuple = tuple[
    int, str, int, int, tuple[int, int], bytes | None, bytes | None,
    list[tuple[str, bytes | None]] | None, str, bool,
]  # fmt: skip

class TapLoop:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        settings: list[tuple[str, str]],
        topics: list[str],
        *,
        stage: str,
        host: str,
        clock_err_ns: int,
        clock_source: str,
        keyed: bool,
        consume_batch: int,
        poll_timeout_s: float,
        columns: list[str],
        on_assign: Callable[[], object],
        on_revoke: Callable[[], list[tuple[str, int, int]]],
        stop: threading.Event | None = None,
    ) -> None: ...
    def take(
        self,
    ) -> tuple[
        ArrowBatch,
        list[RawTuple],
        list[str],
        int,
        int,
        list[tuple[str, int]],
        list[tuple[str, int, int]],
    ]: ...
    def commit(self, offsets: list[tuple[str, int, int]]) -> None: ...
    def close(self) -> None: ...

# The gate's consumer (native/src/source.rs; collectors/_source.py).
class GateSource:
    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        settings: list[tuple[str, str]],
        topics: list[str],
        *,
        on_assign: Callable[[list[tuple[str, int]]], object],
        on_revoke: Callable[[list[tuple[str, int]]], object],
        on_stats: Callable[[str], object] | None = None,
    ) -> None: ...
    def take(
        self, max_records: int, max_bytes: int, timeout_s: float
    ) -> tuple[
        list[bytes | None],
        list[bytes | None],
        list[str],
        list[int],
        list[int],
        list[int],
        list[int],
        list[list[tuple[str, bytes | None]] | None],
        int,
        list[str],
        list[int],
    ]: ...
    def commit(self, offsets: list[tuple[str, int, int]]) -> None: ...
    def pause(self, paused: bool) -> int: ...
    def pause_these(self, partitions: list[tuple[str, int]]) -> None: ...
    def high_watermark(self, topic: str, partition: int, timeout_s: float) -> int: ...
    def close(self) -> None: ...

# The gate's compiled route (native/src/route.rs, producer.rs, eventtime.rs; collectors/_gate.py).
class EventTime:
    def __init__(
        self,
        allowed_lateness_ns: int = 5_000_000_000,
        skew_window_ns: int = 60_000_000_000,
        buckets: int = 12,
        max_providers: int = 10_000,
    ) -> None: ...
    def __len__(self) -> int: ...
    def watermark_ns(self, provider: str) -> int | None: ...
    def late_ns(self, provider: str, origin_ns: int) -> int: ...
    def observe(self, provider: str, origin_ns: int, ingested_ns: int) -> int: ...
    def clock_offset_ns(self, provider: str) -> int | None: ...

class DeliveryReport:
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...

class GateProducer:
    def __init__(self, settings: list[tuple[str, str]]) -> None: ...
    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes | str | None]] | None = None,
        on_delivery: Callable[[str | None, DeliveryReport], object] | None = None,
    ) -> None: ...
    def poll(self, timeout: float = 0.0) -> int: ...
    def flush(self, timeout: float = -1.0) -> int: ...
    def close_epoch(self) -> int: ...
    def wait(self, epoch: int, timeout: float) -> int: ...
    def __len__(self) -> int: ...
    def positions(self) -> dict[tuple[str, int], int]: ...
    def take_failures(self) -> list[tuple[str, int, int, str]]: ...

class GateRows:
    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def take(self, stage: str, host: str) -> ArrowBatch: ...

def route_batch(
    producer: GateProducer,
    event_time: EventTime,
    rows: GateRows,
    batch: Any,
    keys: list[bytes | None],
    slow: list[bool],
    on_slow: Callable[[int], object],
    rejects: Mapping[int, tuple[Any, ...]],
    rule_files: Mapping[tuple[str, int], str],
    *,
    clean_topic: str,
    clean_limit: int | None,
    dead_topic: str,
    dead_limit: int,
    stage: str,
    host: str,
) -> tuple[bytes, int, list[tuple[int, int]], list[int]]: ...
def event_ids(
    topics: list[str],
    partitions: list[int],
    offsets: list[int],
    timestamps_ms: list[int],
    spans: bytes,
) -> tuple[list[str], bytes]: ...
