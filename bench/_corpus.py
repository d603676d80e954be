"""Seeded records of the kinds that stopped gates before, shared by the benchmarks and the
tests: ``record`` is bench/fuzz_gate.py's generator (about 30 % hostile: random bytes, JSON
with wrong types, NaN, huge numbers, repeated keys, endless names, hostile stamp headers, big
keys); ``HOSTILE`` and ``careless`` add the cases that decide the compiled record checker's
verdict (native/src/check.rs): what orjson and the Python path read differently or refuse,
and fields of every kind the typed decoder converts or leaves to Python.

Imported as ``bench._corpus`` (bench scripts put the repository first on sys.path; the test
suite's rootdir is on it too).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import Producer

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]
STAMP_HEADERS = [
    "stampline.event_id",
    "stampline.origin_ns",
    "stampline.ingest_ns",
    "stampline.clock_err_ns",
    "stampline.stamp",
    "stampline.parents",
    "stampline.v",
    "__connect.errors.partition",
    "__connect.errors.topic",
]


def quote(rnd: random.Random, now_ms: int, i: int) -> dict[str, Any]:
    """A good quote."""
    return {
        "provider": f"P{rnd.randint(0, 9)}",
        "instrument": f"SYM{rnd.randint(0, 999):03d}",
        "seq": i,
        "ts": now_ms,
        "type": "quote",
        "price": round(rnd.uniform(1, 500), 2),
        "quantity": rnd.randint(1, 1000),
    }


def _junk(rnd: random.Random) -> Any:
    return rnd.choice(
        [
            None,
            True,
            "",
            "x" * rnd.randint(0, 5000),
            -(10 ** rnd.randint(1, 30)),
            10 ** rnd.randint(1, 30),
            float("nan"),
            float("inf"),
            1e308,
            [1, 2],
            {"a": {"b": []}},
            "[/bold]",
        ]
    )


def _header_value(rnd: random.Random) -> bytes | None:
    return rnd.choice(
        [
            None,
            b"",
            str(uuid.UUID(int=rnd.getrandbits(128))).encode(),
            str(10 ** rnd.randint(1, 40)).encode(),
            b"-1",
            b"abc",
            rnd.randbytes(rnd.randint(1, 60)),
            b"stage=x;in=1" + b"0" * rnd.randint(0, 30) + b";out=2;err=0;host=h",
            # seeded like the rest: a failing record must come back with its seed
            ",".join(str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(3)).encode()
            + b",junk",
        ]
    )


def record(rnd: random.Random, now_ms: int, i: int) -> Record:
    """One record: good most of the time, otherwise one of the hostile kinds."""
    q = quote(rnd, now_ms, i)
    kind = rnd.random()
    if kind < 0.70:
        return None, orjson.dumps(q), []
    return _hostile(rnd, q, kind)


def hostile(rnd: random.Random, now_ms: int, i: int) -> Record:
    """One of ``record``'s hostile kinds, in the shares ``record`` draws them."""
    return _hostile(rnd, quote(rnd, now_ms, i), 0.70 + 0.30 * rnd.random())


def _hostile(rnd: random.Random, q: dict[str, Any], kind: float) -> Record:
    if kind < 0.75:
        return None, rnd.randbytes(rnd.randint(0, 400)), []
    if kind < 0.83:
        q[rnd.choice(list(q))] = _junk(rnd)
        return None, json.dumps(q, allow_nan=True).encode(), []
    if kind < 0.85:
        text = orjson.dumps(q)
        return None, text[:-1] + b',"quantity":-5}', []
    if kind < 0.87:
        q["provider"] = "P" * rnd.randint(300, 60_000)
        return None, orjson.dumps(q), []
    if kind < 0.97:
        count = rnd.randint(1, 5)
        headers = [(rnd.choice(STAMP_HEADERS), _header_value(rnd)) for _ in range(count)]
        return None, orjson.dumps(q), headers
    if kind < 0.99:
        return rnd.randbytes(rnd.randint(0, 100_000)), orjson.dumps(q), []
    return None, orjson.dumps({**q, "pad": "x" * rnd.randint(1_000, 200_000)}), []


def _nest(depth: int, inner: bytes = b"1", repeat: bool = False) -> bytes:
    """A quote whose field "deep" holds objects ``depth`` levels deep in all (the record
    itself is one), the innermost holding ``inner``, with a repeated key there if ``repeat``."""
    levels = depth - 1
    last = b'{"k":' + inner + (b',"k":2}' if repeat else b"}")
    body = b'{"k":' * (levels - 1) + last + b"}" * (levels - 1)
    return b'{"provider":"P1","instrument":"D","seq":1,"ts":1700000000000,"deep":' + body + b"}"


_BASE = b'"provider":"P1","instrument":"SYM001","seq":5,"ts":1700000000000'

# Hand-written cases the checker must call unsure (the Python path then names the failure)
# or must read exactly as the Python path does.
HOSTILE: list[bytes | None] = [
    None,
    b"",
    b" ",
    b"{}",
    b"[]",
    b"1",
    b'"s"',
    b"null",
    # repeated keys, at the top, at depth, and written differently
    b"{" + _BASE + b',"ts":1}',
    b"{" + _BASE + b',"x":{"a":1,"a":1}}',
    b"{" + _BASE + b',"x":[{"b":[{"c":{"d":1,"d":2}}]}]}',
    b"{" + _BASE + b',"a":1,"\\u0061":2}',
    b"{" + _BASE + b',"\\u0070rovider":"P2"}',
    b'{"\\u0070rovider":"P3","instrument":"I","seq":1,"ts":1700000000000}',
    b"{" + _BASE + b',"\\ud83d\\ude00":1,"\xf0\x9f\x98\x80":2}',
    b"{" + _BASE + b',"a\\"b":1,"a\\u0022b":2}',
    # values only one of the paths reads
    b"{" + _BASE + b',"p":NaN}',
    b"{" + _BASE + b',"p":Infinity}',
    b"{" + _BASE + b',"p":-Infinity}',
    b"{" + _BASE + b',"p":[1,{"q":NaN}]}',
    b'{"provider":"P1","instrument":"I","seq":NaN,"ts":1700000000000}',
    b"{" + _BASE + b',"p":1e400}',
    b"{" + _BASE + b',"p":-1e400}',
    b"{" + _BASE + b',"p":1e-400}',
    b"{" + _BASE + b',"p":-0}',
    b"{" + _BASE + b',"p":-0.0}',
    b"{" + _BASE + b',"p":1.7976931348623157e308}',
    b"{" + _BASE + b',"p":1.7976931348623159e308}',
    b"{" + _BASE + b',"p":18446744073709551615}',
    b"{" + _BASE + b',"p":18446744073709551616}',
    b"{" + _BASE + b',"p":-9223372036854775808}',
    b"{" + _BASE + b',"p":-9223372036854775809}',
    b"{" + _BASE + b',"p":' + b"9" * 400 + b"}",
    b"{" + _BASE + b',"p":01}',
    b"{" + _BASE + b',"p":1.}',
    b"{" + _BASE + b',"p":.5}',
    b"{" + _BASE + b',"p":+1}',
    # nesting around the checker's limit (256)
    *(_nest(d) for d in (2, 255, 256, 257, 900)),
    *(_nest(d, repeat=True) for d in (3, 256, 257, 900)),
    # framing
    b"\xef\xbb\xbf{" + _BASE + b"}",
    b"{" + _BASE + b"}x",
    b"{" + _BASE + b"}{}",
    b"{" + _BASE + b"} {" + _BASE + b"}",
    b"{" + _BASE + b"}\x00",
    b"\x00{" + _BASE + b"}",
    b"\x0c{" + _BASE + b"}",
    b"{" + _BASE + b"}\x0c",
    b" \t\r\n{" + _BASE + b"} \t\r\n",
    b"{" + _BASE,
    b"{" + _BASE + b",}",
    # strings: invalid UTF-8, surrogates, control characters, escapes
    b"{" + _BASE + b',"s":"\xff"}',
    b"{" + _BASE + b',"s":"\xc3"}',
    b"{" + _BASE + b',"s":"\xed\xa0\x80"}',
    b"{" + _BASE + b',"s":"\\ud800"}',
    b"{" + _BASE + b',"s":"\\udc00"}',
    b"{" + _BASE + b',"s":"\\ud800\\u0041"}',
    b"{" + _BASE + b',"\\ud800":1}',
    b"{" + _BASE + b',"s":"a\x00b"}',
    b"{" + _BASE + b',"s":"a\\u0000b"}',
    b"{" + _BASE + b',"s":"\x1f"}',
    b"{" + _BASE + b',"s":"\x7f"}',
    b"{" + _BASE + b',"s":"\\x41"}',
    b"{" + _BASE + b',"s":"\\u00G1"}',
    b'{"provider":"P\\u00e9\\t\\"\\/","instrument":"\xe6\x97\xa5","seq":1,"ts":1700000000000}',
    b'{"provider":"' + "é".encode() * 256 + b'","instrument":"I","seq":1,"ts":1700000000000}',
    b'{"provider":"' + "é".encode() * 257 + b'","instrument":"I","seq":1,"ts":1700000000000}',
    b'{"provider":"P","instrument":"' + b"x" * 257 + b'","seq":1,"ts":1700000000000}',
]

# Cases on which the Python path raises today, for the whole batch (the gate then judges the
# batch's records one by one): nesting near orjson's limit of 1,024 levels (RecursionError in
# the duplicate-key count from about 1,000), and a lone surrogate in the name of a record
# refused but read leniently (Arrow cannot encode it for the rule state).
RAISING: list[bytes | None] = [
    *(_nest(d) for d in (999, 1000, 1023, 1024, 1025, 1100)),
    *(_nest(d, repeat=True) for d in (990, 1000, 1024, 1025)),
    b'{"provider":"\\ud800","instrument":"I","seq":NaN,"ts":1700000000000}',
    b'{"provider":"\\ud800","instrument":"I","seq":1,"ts":1700000000000}',
]


def careless(rnd: random.Random, now_ms: int, i: int) -> bytes:
    """A quote whose extraction fields are of a kind the decoder converts, or leaves to
    Python: floats, strings, booleans, nulls, objects, out-of-range numbers, missing."""
    q: dict[str, Any] = quote(rnd, now_ms, i)
    kinds: list[Any] = [
        None,
        True,
        False,
        "",
        "17",
        -1,
        0,
        2**63 - 1,
        2**63,
        2**64 - 1,
        1.0,
        2.5,
        -0.0,
        1e18,
        now_ms + 0.5,
        [1],
        {"ts": now_ms},
        "2026-12-06T08:00:00.123456789Z",
    ]
    for name in rnd.sample(["provider", "instrument", "seq", "ts"], rnd.randint(1, 3)):
        if rnd.random() < 0.2:
            q.pop(name)
        else:
            q[name] = rnd.choice(kinds)
    if rnd.random() < 0.1:
        q["ts"] = rnd.choice([-1, 0, 9_223_372_036_854, 9_223_372_036_855, 2**64 - 1])
    text = json.dumps(q, ensure_ascii=rnd.random() < 0.5, separators=rnd.choice([None, (",", ":")]))
    return text.encode()


def values(seed: int, n: int) -> list[tuple[bytes | None, list[tuple[str, bytes | None]]]]:
    """``n`` values with headers (see :func:`iter_values`) in a list."""
    return list(iter_values(seed, n))


def iter_values(seed: int, n: int) -> Iterator[tuple[bytes | None, list[tuple[str, bytes | None]]]]:
    """``n`` values with headers: ``HOSTILE`` and ``RAISING`` once each, then fuzz_gate's
    records, careless ones, and ``HOSTILE`` again (2 %), in a seeded order."""
    rnd = random.Random(seed)
    now_ms = 1_765_000_000_000
    first = [*HOSTILE, *RAISING][:n]
    yield from ((v, []) for v in first)
    for i in range(len(first), n):
        kind = rnd.random()
        headers: list[tuple[str, bytes | None]]
        if kind < 0.6:
            _key, value, headers = record(rnd, now_ms, i)
        elif kind < 0.98:
            value, headers = careless(rnd, now_ms, i), []
        else:
            value, headers = rnd.choice(HOSTILE), []
        if rnd.random() < 0.3:
            headers = [*headers, ("schema-version", rnd.choice([b"1", b"2", b"x"]))]
        yield value, headers


def produce_all(bootstrap: str, topic: str, records: Iterator[Record] | list[Record]) -> None:
    """Produce ``records`` to ``topic`` (values up to 20 MB), waiting for every one."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 20_000_000}
    )
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers or None)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise RuntimeError(f"the records were not all produced to {topic}")
