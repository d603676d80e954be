"""The compiled batch digest (native/, Rust over Arrow buffers) gives the same hex as the Python
reference in audit/_ledger.py for every table, and digest_batch takes it whenever it can."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stampline import _native  # ./dev test builds it (it needs cargo): its absence is a failure
from stampline.audit import ChdbStore, _ledger, canonical_table
from stampline.audit._ledger import (
    _HASH_THREADS,
    CANONICAL,
    CANONICAL_SELECT,
    DEAD_CANONICAL,
    DEAD_SORT_KEYS,
    DIGEST_PATHS,
    SORT_KEYS,
    _digest_python,
    digest_batch,
)
from stampline.audit._trailformat import CANONICAL_SCHEMA, DEAD_LETTER_SCHEMA
from tests.audit.test_store_suite import pipeline
from tests.helpers import drop_database

I64 = np.iinfo(np.int64)
# Prices travel as their float64 bits: NaN (two payloads), infinities, -0.0, subnormals.
PRICES = np.array(
    [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, 1.5, -1e308], dtype="<f8"
).view("<i8")
STRINGS = [
    "",
    "a",
    "é",
    "日本語",
    "🦀\u200d🦀",
    "\u202eevil",  # bidi override
    "nul\x00inside",
    "x" * 300,
    "0190c6d8-0000-7000-8000-000000000000",
]


def _ints(rng: random.Random, n: int, name: str) -> list[int]:
    if name == "price":
        return [int(PRICES[rng.randrange(len(PRICES))]) for _ in range(n)]
    pool = [0, 1, -1, I64.min, I64.max, 1_700_000_000_000_000_000]
    # Few distinct values so that sort keys tie and later keys (and stability) decide.
    return [rng.choice(pool) if rng.random() < 0.5 else rng.randrange(4) for _ in range(n)]


def _strings(rng: random.Random, n: int, nulls: bool) -> list[str | None]:
    return [None if nulls and rng.random() < 0.1 else rng.choice(STRINGS) for _ in range(n)]


def _table(rng: random.Random, schema: pa.Schema, rows: int, chunks: int) -> pa.Table:
    """A table of ``schema`` in ``chunks`` record batches, some of them slices (offsets > 0)."""
    parts = []
    for size in _split(rng, rows, chunks):
        pad = rng.randrange(3)
        arrays = []
        for field in schema:
            if pa.types.is_integer(field.type):
                values: list[object] = _ints(rng, size + pad, field.name)
            else:
                values = _strings(rng, size + pad, nulls=rng.random() < 0.3)
                if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                    values = [v if v is None else v.encode() + b"\xff" for v in values]  # type: ignore[attr-defined]
            if pa.types.is_unsigned_integer(field.type):  # the same bits, as chDB's UInt64
                array = pa.array(values, pa.int64()).cast(field.type, safe=False)
            else:
                array = pa.array(values, field.type)
            arrays.append(array.slice(pad))
        parts.append(pa.table(arrays, schema=schema))
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _split(rng: random.Random, rows: int, chunks: int) -> list[int]:
    cuts = sorted(rng.randrange(rows + 1) for _ in range(chunks - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, rows], strict=True)]


def _retyped(schema: pa.Schema, rng: random.Random) -> pa.Schema:
    """The same columns in the other types the native path reads (chDB gives some of them)."""
    ints, strs = [pa.int64(), pa.uint64()], [pa.string(), pa.large_string(), pa.binary()]
    return pa.schema(
        (f.name, rng.choice(ints) if pa.types.is_integer(f.type) else rng.choice(strs))
        for f in schema
    )


KINDS = {
    "observations": (CANONICAL_SCHEMA, CANONICAL, SORT_KEYS),
    "dead_letters": (DEAD_LETTER_SCHEMA, DEAD_CANONICAL, DEAD_SORT_KEYS),
}
SHAPES = [(0, 1), (0, 3), (1, 1), (7, 3), (1000, 1), (2500, 9), (100_000, 4)]


@pytest.mark.parametrize("retype", [False, True], ids=["as_written", "retyped"])
@pytest.mark.parametrize(("rows", "chunks"), SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
@pytest.mark.parametrize("kind", list(KINDS))
def test_native_digest_matches_the_python_reference(
    kind: str, rows: int, chunks: int, retype: bool
) -> None:
    """Over a seeded corpus of hostile tables, both paths give the same column and batch hex,
    in any row order and already in canonical order (where whole runs are hashed at once)."""
    rng = random.Random(f"{kind}/{rows}/{chunks}/{retype}")
    schema, spec, keys = KINDS[kind]
    table = _table(rng, _retyped(schema, rng) if retype else schema, rows, chunks)
    label = f"{kind} {rows}x{chunks} {table.schema}"
    order = pc.sort_indices(table, [(k, "ascending") for k in keys])
    # The same rows in canonical order, in batches that are slices of one array (offsets > 0).
    ordered = pa.Table.from_batches(table.take(order).to_batches(max_chunksize=999), table.schema)
    want = _digest_python(table, spec, order)
    for t in (table, ordered):
        before = DIGEST_PATHS["native"]
        digest, columns = digest_batch(t, spec, keys)
        assert list(columns.values()) == want, label
        assert DIGEST_PATHS["native"] == before + 1
    batch, _ = _native.digest_table(
        table, pa.table([order], names=["order"]), [(n, k) for n, _, k in spec], _HASH_THREADS
    )
    assert digest == batch


def test_a_table_the_native_path_cannot_read_goes_to_the_python_path() -> None:
    """Integer nulls (the reference makes them NaN) and a float column take the Python path,
    which is counted with its reason, and digest as the reference does."""
    rng = random.Random(7)
    table = _table(rng, DEAD_LETTER_SCHEMA, 50, 2)
    with_null = table.set_column(1, "received", pa.array([None] + [1] * 49, pa.int64()))
    as_float = table.set_column(1, "received", pa.array([1.0] * 50, pa.float64()))
    for bad, why in [
        (with_null, "integers with nulls"),
        (as_float, "Float64 is not a 64-bit integer"),
    ]:
        order = pc.sort_indices(bad, [(k, "ascending") for k in DEAD_SORT_KEYS])
        paths = [p for p in DIGEST_PATHS if why in p]
        before = DIGEST_PATHS[paths[0]] if paths else 0
        with warnings.catch_warnings():  # the reference's own cast of NaN, in its threads
            warnings.simplefilter("ignore", RuntimeWarning)
            _, columns = digest_batch(bad, DEAD_CANONICAL, DEAD_SORT_KEYS)
            assert list(columns.values()) == _digest_python(bad, DEAD_CANONICAL, order)
        (path,) = [p for p in DIGEST_PATHS if why in p]
        assert path.startswith('python: column "received"')
        assert DIGEST_PATHS[path] == before + 1


def test_a_batch_read_back_from_chdb_is_digested_natively(chdb_dir: Path, uid: str) -> None:
    """The canonical table chDB returns for verification is read by the native path, and
    its digest is the one the ledger recorded at write time."""
    with ChdbStore(chdb_dir, f"t_{uid}") as store:
        try:
            rows = pipeline(20)
            store.write_batch("observations", canonical_table(rows))
            written = store.query_arrow(f"SELECT digest FROM {store.database}.ledger", None)
            canon = store.query_arrow(
                f"SELECT {CANONICAL_SELECT} FROM {store.database}.observations", None
            )
            before = DIGEST_PATHS["native"]
            digest, _ = digest_batch(canon)
            assert DIGEST_PATHS["native"] == before + 1
            assert digest == written.column("digest")[0].as_py().decode()
        finally:
            drop_database(store)


def test_without_the_compiled_module_the_python_path_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An install built without cargo has no stampline._native: digest_batch gives the same
    digest on the Python path and counts it as such."""
    table = _table(random.Random(3), CANONICAL_SCHEMA, 300, 2)
    native = digest_batch(table)
    monkeypatch.setattr(_ledger, "_native", None)
    before = DIGEST_PATHS["python: no compiled module"]
    assert digest_batch(table) == native
    assert DIGEST_PATHS["python: no compiled module"] == before + 1
