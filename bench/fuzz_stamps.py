"""The stamp reader's fuzz corpus, and the compiled reader held to the Python reference on it.

    python bench/fuzz_stamps.py seed DIR     write seed inputs: what stampline's stampers write
                                             and hostile records (tests/collectors/stampcorpus.py)
    python bench/fuzz_stamps.py check DIR    read every input in DIR both ways; exit 1 on any
                                             difference

bench/fuzz_stamps.sh runs both around ``cargo fuzz``. An input is headers separated by NUL
bytes; a header's first byte picks its name (0-8: one of the contract's names, the rest its
value; 9-17: that name with a null value; else another header), as the fuzz target
(native/fuzz-stamps/fuzz_targets/stamps.rs) decodes it.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

from stampline import _native  # noqa: E402
from stampline.collectors import StageStamp, StampError, Stamps, read_stamps  # noqa: E402
from stampline.collectors._stamps import read_stamps_batch  # noqa: E402
from tests.collectors.stampcorpus import NAMES, Headers, hostile, written  # noqa: E402

NAME_ORDER = [
    "stampline.v",
    "stampline.event_id",
    "stampline.origin_ns",
    "stampline.ingest_ns",
    "stampline.clock_err_ns",
    "stampline.stamp",
    "stampline.parents",
    "stampline.parent_stamps",
    "traceparent",
]
assert set(NAME_ORDER) == set(NAMES)
MAX_LEN = 65_536  # the fuzz run's -max_len


def decode(data: bytes) -> Headers:
    out: Headers = []
    for part in data.split(b"\x00"):
        if not part:
            continue
        first, value = part[0], part[1:]
        if first <= 8:
            out.append((NAME_ORDER[first], value))
        elif first <= 17:
            out.append((NAME_ORDER[first - 9], None))
        else:
            out.append(("x-other", value))
    return out


def encode(headers: Headers) -> bytes | None:
    """The input for ``headers``; None where a value holds a NUL (the separator)."""
    parts = []
    for key, value in headers:
        if key not in NAMES:
            parts.append(b"\x12")
        elif value is None:
            parts.append(bytes([NAME_ORDER.index(key) + 9]))
        elif b"\x00" in value:
            return None
        else:
            parts.append(bytes([NAME_ORDER.index(key)]) + value)
    data = b"\x00".join(parts)
    return data if len(data) <= MAX_LEN else None


def seed(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = written(22, 400)
    kept = 0
    for headers in [*base, *hostile(23, base, 1600)]:
        data = encode(headers)
        if data is not None:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
            kept += 1
    print(f"seeds: {kept} inputs in {folder}")


def outcome(got: object) -> str:
    return f"raise {got}" if isinstance(got, StampError) else repr(got)


def check(folder: Path) -> int:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    batch = [decode(p.read_bytes()) for p in files]
    compiled, unsure_list = _native.read_stamps_batch(batch, Stamps, StageStamp)
    unsure = dict(unsure_list)
    whole = read_stamps_batch(batch)
    differ = 0
    for i, (path, headers) in enumerate(zip(files, batch, strict=True)):
        try:
            want = outcome(read_stamps(headers))
        except StampError as exc:
            want = outcome(exc)
        mine = outcome(compiled[i]) if i not in unsure else want
        if mine != want or outcome(whole[i]) != want:
            differ += 1
            print(f"DIFFERS {path.name}: reference {want[:200]} / compiled {mine[:200]}")
    read_native = len(batch) - len(unsure)
    print(
        f"checked {len(batch)} inputs against read_stamps: {differ} differ; {read_native} read "
        f"by the compiled reader ({sum(isinstance(c, Stamps) for c in compiled)} with stamps), "
        f"{len(unsure)} left to the reference"
    )
    for why, n in Counter(unsure.values()).most_common():
        print(f"  {n:6d}  {why}")
    return 1 if differ else 0


if __name__ == "__main__":
    what, folder = sys.argv[1], Path(sys.argv[2])
    if what == "seed":
        seed(folder)
    else:
        sys.exit(check(folder))
