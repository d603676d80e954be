"""Seeded corpora of stamp headers: as stampline's stampers write them, and hostile.

``written`` makes what the stamping contract's writers produce (``Stamps.headers()``, the
gate's layout, ``append_stamp``, the SDK's ``stage()``): the compiled stamp reader must read
every one of these itself. ``hostile`` breaks them every way a producer outside the firm
might: the compiled reader must either read them as ``read_stamps`` does or leave them to it.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from confluent_kafka import Message

from stampline.audit import UNKNOWN_PARENT, ParentStamp
from stampline.collectors import (
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
    source_event_id,
    stage,
)
from stampline.collectors._stamps import (
    BOUND_SOURCES,
    MAX_CLOCK_ERR_NS,
    MAX_PARENTS,
    MAX_STAGES,
    PLAUSIBLE_NS,
    new_traceparent,
)

Headers = list[tuple[str, bytes | None]]

NAMES = (
    H_VERSION,
    H_EVENT_ID,
    H_ORIGIN,
    H_INGEST,
    H_CLOCK_ERR,
    H_STAMP,
    H_PARENTS,
    H_PARENT_STAMPS,
    H_TRACEPARENT,
)
T0 = 1_795_275_946_438_000_000  # a time in the plausible window (2026), in ns
STAGE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
HOST_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x3B)
OTHER_HEADERS = [
    ("x-app", b"feed-7"),
    ("x-null", None),
    ("content-type", b"application/json"),
    ("stampline.warn", b"quote.spread@v1"),
    (H_LATE, b"1200000"),
    ("x-bin", bytes(range(256))),
    ("\u00e9t\u00e9", "\u00e9".encode()),
]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _name(rng: random.Random, chars: str = STAGE_CHARS, most: int = 64) -> str:
    n = rng.choice([1, 4, 8, most]) if rng.random() < 0.3 else rng.randint(1, 12)
    return "".join(rng.choice(chars) for _ in range(n))


def _time(rng: random.Random) -> int:
    pick = rng.random()
    if pick < 0.1:
        return PLAUSIBLE_NS[0]
    if pick < 0.2:
        return PLAUSIBLE_NS[1] - 1
    return T0 + rng.randrange(10**12)


def _err(rng: random.Random) -> int:
    return rng.choice([0, 1, 250_000, 1_000_000, MAX_CLOCK_ERR_NS, rng.randrange(10**9)])


def _stage_stamp(rng: random.Random, after: int) -> StageStamp:
    received = min(after + rng.randrange(10**6), PLAUSIBLE_NS[1] - 1)
    emitted = min(received + rng.choice([0, 1, rng.randrange(10**7)]), PLAUSIBLE_NS[1] - 1)
    host = rng.choice(["", "md-gate-1", "risk-1", _name(rng, HOST_CHARS, 255)])
    source = rng.choice(["", "", *sorted(BOUND_SOURCES)])
    return StageStamp(_name(rng), received, emitted, _err(rng), host, source)


def _parent_stamp(rng: random.Random) -> ParentStamp:
    pick = rng.random()
    if pick < 0.2:
        return UNKNOWN_PARENT
    if pick < 0.4:
        return ("origin", _time(rng), 0)
    return (_name(rng), _time(rng), _err(rng))


def _stamps(rng: random.Random) -> Stamps:
    origin = rng.choice([0, _time(rng)])
    stages: list[StageStamp] = []
    last = origin or T0
    for _ in range(rng.choice([0, 1, 1, 2, 3, rng.randint(0, MAX_STAGES)])):
        stages.append(_stage_stamp(rng, last))
        last = stages[-1].emitted_ns
    parents = tuple(_uuid(rng) for _ in range(rng.choice([0, 0, 1, 3, rng.randint(0, 40)])))
    left = tuple(_parent_stamp(rng) for _ in parents) if parents and rng.random() < 0.7 else ()
    return Stamps(
        _uuid(rng),
        origin,
        rng.choice([0, _time(rng)]),
        _err(rng),
        tuple(stages),
        parents,
        rng.choice(["", new_traceparent(_uuid(rng)), "x" * 300]),
        left,
    )


def _gate_headers(rng: random.Random) -> Headers:
    """The headers the gate gives a new event, built as ``Gate._route`` builds them."""
    received = _time(rng)
    emitted = min(received + rng.randrange(10**6), PLAUSIBLE_NS[1] - 1)
    ms = received // 1_000_000
    event_id = source_event_id("md.raw", rng.randrange(12), rng.randrange(10**9), ms)
    err = _err(rng)
    host = rng.choice(["md-gate-1", "gw", _name(rng, HOST_CHARS, 255)])
    headers: Headers = [
        (H_VERSION, b"1"),
        (H_EVENT_ID, event_id.encode()),
        (H_ORIGIN, str(max(received - rng.randrange(10**9), PLAUSIBLE_NS[0])).encode()),
        (H_INGEST, str(received).encode()),
        (H_CLOCK_ERR, str(err).encode()),
        (H_TRACEPARENT, new_traceparent(event_id).encode()),
        (H_STAMP, f"stage=gate;in={received};out={emitted};err={err};host={host}".encode()),
    ]
    if rng.random() < 0.2:
        headers.insert(0, ("stampline.warn", b"quote.spread@v1"))
    if rng.random() < 0.2:
        headers.append((H_LATE, str(rng.randrange(10**9)).encode()))
    return headers


def gate_written(seed: int, n: int) -> list[Headers]:
    """``n`` header lists as the gate writes them on the events it forwards (bench/stamps.py)."""
    rng = random.Random(seed)
    return [_gate_headers(rng) for _ in range(n)]


class _Recording:
    """A producer that keeps what the SDK asks it to produce (the SDK takes any object with
    confluent-kafka's ``produce``): the headers are what a stage would send."""

    def __init__(self) -> None:
        self.headers: list[Headers] = []

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        self.headers.append(list(kwargs.get("headers") or []))


def message(headers: Any, offset: int = 0, topic: str = "md.clean") -> Message:
    return Message(
        topic=topic,
        partition=offset % 3,
        offset=offset,
        key=b"k",
        value=b"{}",
        headers=headers,
        timestamp=(1, T0 // 1_000_000 + offset),
    )


def _sdk_headers(rng: random.Random, inputs: list[Headers]) -> list[Headers]:
    """What SDK stages write: a derived event from ``inputs`` and the first one forwarded."""
    sent = _Recording()
    records = [message(h, i) for i, h in enumerate(inputs)]
    name, host = _name(rng), rng.choice(["risk-1", ""])
    with stage(name, *records, producer=sent, host=host) as st:
        st.produce("decisions", b"{}", headers=[("x-app", b"risk")])
        st.forward("enriched", records[0])
    return sent.headers


def written(seed: int, n: int) -> list[Headers]:
    """``n`` header lists as stampline's stampers write them, some after a producer's own."""
    rng = random.Random(seed)
    out: list[Headers] = []
    while len(out) < n:
        pick = rng.random()
        if pick < 0.4:
            headers = _gate_headers(rng)
        elif pick < 0.8:
            headers = _stamps(rng).headers()
        elif pick < 0.9:
            headers = _stamps(rng).headers()
            for _ in range(rng.randint(1, 5)):
                headers = append_stamp(headers, _stage_stamp(rng, T0))
        else:
            inputs = [rng.choice([_gate_headers(rng), _stamps(rng).headers()])]
            inputs += [_gate_headers(rng) for _ in range(rng.randint(0, 3))]
            made = _sdk_headers(rng, inputs)
            out.extend(h for h in made if sum(k == H_STAMP for k, _ in h) <= MAX_STAGES)
            continue
        if rng.random() < 0.3:
            headers = rng.sample(OTHER_HEADERS, rng.randint(1, 3)) + headers
        if sum(k == H_STAMP for k, _ in headers) <= MAX_STAGES:  # more is refused
            out.append(headers)
    return out[:n]


# Ways to spell a number, an id or a stamp that the reference may read (or refuse) and
# that the compiled reader must leave to it unless it reads them exactly the same.
def _respell_number(rng: random.Random, value: bytes) -> bytes:
    return rng.choice(
        [
            b" " + value,
            value + b" ",
            value + b"\n",
            b"\t" + value,
            b"\x0c" + value + b"\x0b",
            b"+" + value,
            b"-" + value,
            b"0" + value,
            b"000" + value,
            value[:1] + b"_" + value[1:],
            value + b"0",
            value * 2,
            b"1" * 40,
            b"9" * 5000,
            str(2**63).encode(),
            str(2**64).encode(),
            str(2**64 - 1).encode(),
            b"-0",
            b"0",
            b"",
            b"0x10",
            b"1e9",
            b"\xd9\xa1\xd9\xa2",  # Arabic-Indic digits, in UTF-8
            value.replace(b"1", b"\xef\xbc\x91"),  # fullwidth 1
            str(PLAUSIBLE_NS[0] - 1).encode(),
            str(PLAUSIBLE_NS[1]).encode(),
            str(MAX_CLOCK_ERR_NS + 1).encode(),
        ]
    )


def _respell_id(rng: random.Random, value: bytes) -> bytes:
    text = value.decode("ascii", "replace")
    return rng.choice(
        [
            text.upper().encode(),
            ("{" + text + "}").encode(),
            ("urn:uuid:" + text).encode(),
            text.replace("-", "").encode(),
            (" " + text).encode(),
            (text + "\n").encode(),
            text[:-1].encode(),
            (text + "0").encode(),
            text.replace("-", "_").encode(),
            text.replace("a", "g").encode(),
            text.encode("utf-16"),
            b"\xff" + value,
            ("+" + text[1:]).encode(),
            (text[:9] + "_" + text[10:]).encode(),
            b"x" * 100_000,
            b"",
        ]
    )


def _respell_stamp(rng: random.Random, value: bytes) -> bytes:
    parts = value.split(b";")
    pick = rng.randrange(18)
    if pick == 0:
        rng.shuffle(parts)
    elif pick == 1:
        del parts[rng.randrange(len(parts))]
    elif pick == 2:
        parts.append(rng.choice([b"src=", b"src=ntp", b"src=chrony", b"x=y", b"src=CHRONY", b""]))
    elif pick == 3:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(parts))
    elif pick == 4:
        parts[0] = parts[0] + rng.choice([b"\n", b" ", b"=x", b"\x00", b"\xc3\xa9"])
    elif pick == 5:
        parts[-1] = parts[-1] + rng.choice([b"\n", b" ", b";", b"\xff"])
    elif pick == 6:
        parts[0] = b"stage=" + b"s" * rng.choice([64, 65, 1000])
    elif pick == 7:
        parts = [p.replace(b"=", b" = ", 1) for p in parts]
    elif pick == 8:
        parts = [p.upper() if rng.random() < 0.5 else p for p in parts]
    elif pick == 9 and len(parts) > 2:  # out before in
        parts[1], parts[2] = b"in=" + parts[2][4:], b"out=" + parts[1][3:]
    elif 10 <= pick <= 13 and len(parts) > 3:
        i = rng.randrange(1, 4)
        head, _, number = parts[i].partition(b"=")
        parts[i] = head + b"=" + _respell_number(rng, number)
    elif pick == 14 and len(parts) > 4:
        parts[4] = b"host=" + rng.choice([b"a b", b"h" * 256, b"h" * 255, b"\x7f", b"h\n", b""])
    elif pick == 15:
        return value + b"x" * rng.choice([1, 1000, 1_000_000])
    elif pick == 16:
        return b"stage=a;in=1;out=1"
    else:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    return b";".join(parts)


def _respell_parents(rng: random.Random, value: bytes) -> bytes:
    ids = value.split(b",")
    return rng.choice(
        [
            b"," + value + b",,",
            b", ".join(ids),
            value.upper(),
            b",".join(ids[:-1]) if len(ids) > 1 else b"",
            value + b"," + _respell_id(rng, ids[0]),
            b",".join([ids[0]] * (MAX_PARENTS + 1)),
            b",".join([ids[0]] * MAX_PARENTS),
            b"",
            b",",
            value + b"\xff",
        ]
    )


def _respell_parent_stamps(rng: random.Random, value: bytes) -> bytes:
    entries = value.split(b",")
    return rng.choice(
        [
            value + b",-",
            b",".join(entries[:-1]),
            value + b" ",
            value.replace(b"/", b"//", 1),
            value.replace(b"/", b"/+", 1),
            value.replace(b"/", b"/ ", 1),
            b",".join(b"-" for _ in entries),
            b",".join(b"origin/" + str(T0).encode() + b"/0" for _ in entries),
            b",".join(b"s\n/" + str(T0).encode() + b"/0" for _ in entries),
            b",".join(b"s/" + str(T0).encode() + b"/0/1" for _ in entries),
            b",".join(b"s/" + b"1" * 126 for _ in entries),
            value + b"x" * (128 * len(entries)),
            b"",
            b"-",
            value.replace(b"-", b"\xe2\x80\x93"),  # an en dash
        ]
    )


def _respell(rng: random.Random, name: str, value: bytes) -> bytes:
    if name == H_STAMP:
        return _respell_stamp(rng, value)
    if name == H_EVENT_ID:
        return _respell_id(rng, value)
    if name == H_PARENTS:
        return _respell_parents(rng, value)
    if name == H_PARENT_STAMPS:
        return _respell_parent_stamps(rng, value)
    if name == H_VERSION:
        return rng.choice([b"2", b"0", b"01", b"1 ", b" 1", b"-1", b"one", b"1.0", b"", b"\xff"])
    if name == H_TRACEPARENT:
        return rng.choice([value + b"\xff", b"t" * 1000, bytes(range(128)), b"", value * 5])
    return _respell_number(rng, value)


def hostile(seed: int, base: list[Headers], n: int) -> list[Headers]:
    """``n`` header lists broken from ``base`` (one to three mutations each)."""
    rng = random.Random(seed)
    out: list[Headers] = []
    while len(out) < n:
        headers = list(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            headers = _mutate(rng, headers)
        out.append(headers)
    return out


def _mutate(rng: random.Random, headers: Headers) -> Headers:
    ours = [i for i, (k, v) in enumerate(headers) if k in NAMES and v is not None]
    pick = rng.randrange(14)
    if pick <= 4 and ours:  # respell one of the contract's values
        i = rng.choice(ours)
        key, value = headers[i]
        assert value is not None
        headers[i] = (key, _respell(rng, key, value))
    elif pick == 5 and ours:  # the same name again, before or after, with another value
        key, value = headers[rng.choice(ours)]
        assert value is not None
        other = rng.choice([value, _respell(rng, key, value), None])
        headers.insert(rng.randrange(len(headers) + 1), (key, other))
    elif pick == 6 and ours:  # a field missing
        del headers[rng.choice(ours)]
    elif pick == 7 and ours:  # a name spelled otherwise
        i = rng.choice(ours)
        key, value = headers[i]
        key = rng.choice(
            [key.upper(), key.title(), f" {key}", f"{key} ", f"{key}\x00", key[:-1], key + "s"]
        )
        headers[i] = (key, value)
    elif pick == 8 and ours:  # a null value where a stamp was
        i = rng.choice(ours)
        headers[i] = (headers[i][0], None)
    elif pick == 9:  # endless names, huge values, thousands of headers
        what = rng.randrange(4)
        if what == 0:
            headers.append(("n" * rng.choice([1000, 100_000]), b"v"))
        elif what == 1:
            headers.insert(0, ("x-big", b"v" * 1_000_000))
        elif what == 2:
            headers.extend((f"x-{i}", str(i).encode()) for i in range(rng.choice([1000, 5000])))
        else:
            stamp = next((v for k, v in headers if k == H_STAMP), None) or (
                f"stage=s;in={T0};out={T0};err=0;host=h".encode()
            )
            headers.extend((H_STAMP, stamp) for _ in range(rng.choice([MAX_STAGES, 100])))
    elif pick == 10:  # a byte flipped, added or cut in one of the contract's values
        if ours:
            i = rng.choice(ours)
            key, value = headers[i]
            assert value is not None
            raw = bytearray(value)
            at = rng.randrange(len(raw) + 1)
            how = rng.randrange(3)
            if how == 0 and raw:
                raw[min(at, len(raw) - 1)] = rng.randrange(256)
            elif how == 1:
                raw.insert(at, rng.randrange(256))
            else:
                del raw[at:]
            headers[i] = (key, bytes(raw))
    elif pick == 11:  # the contract's names in another order
        rng.shuffle(headers)
    elif pick == 12:  # a header missing from a record that has the others
        name = rng.choice([H_VERSION, H_ORIGIN, H_INGEST, H_CLOCK_ERR, H_TRACEPARENT])
        headers = [(k, v) for k, v in headers if k != name]
    else:  # a version header first, of another version
        headers.insert(0, (H_VERSION, rng.choice([b"2", b"1", b"0"])))
    return headers


# Header lists that are not a list of (str, bytes | None) tuples: confluent-kafka never gives
# these, but read_stamps takes any sequence; each is compared with the reference alone.
ODD_SHAPES: list[Any] = [
    None,
    [],
    (),
    [(H_EVENT_ID, str(uuid.UUID(int=7)))],  # a str value
    [(H_EVENT_ID, bytearray(str(uuid.UUID(int=7)).encode()))],
    [(H_EVENT_ID, memoryview(str(uuid.UUID(int=7)).encode()))],
    [(H_EVENT_ID.encode(), str(uuid.UUID(int=7)).encode())],  # a bytes name
    [(7, b"x")],
    [(None, b"x")],
    [(None, None)],
    [([], b"x")],  # an unhashable name
    [(H_EVENT_ID, str(uuid.UUID(int=7)).encode(), b"x")],  # three items
    [(H_EVENT_ID,)],
    [[H_EVENT_ID, str(uuid.UUID(int=7)).encode()]],  # a list, not a tuple
    ((H_EVENT_ID, str(uuid.UUID(int=7)).encode()),),  # a tuple of tuples
    [("\ud800", b"x"), (H_EVENT_ID, str(uuid.UUID(int=7)).encode())],  # a lone surrogate
    [(H_STAMP, 5)],
    {H_EVENT_ID: str(uuid.UUID(int=7)).encode()},
]
