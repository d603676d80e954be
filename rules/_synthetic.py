"""A synthetic market-data batch with known bad rows, shared by the GX agreement test and
bench/rules.py so both judge exactly the same data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def market_batch(n: int, keys: int = 10_000, bad_every: int = 97, seed: int = 7) -> pa.Table:
    """``n`` quotes over ``keys`` (provider, instrument) keys; about one row in ``bad_every``
    breaks one of the eight stateless rules (a null, a negative, a crossed quote, ...)."""
    rng = np.random.default_rng(seed)
    providers = np.array(["xnas", "xnys", "bats", "arca", "edgx"])
    key = rng.integers(0, keys, n)
    instrument_names = np.array([f"I{k // len(providers):05d}" for k in range(keys)], dtype=object)
    provider = providers[key % len(providers)]
    instrument = instrument_names[key]
    mid = 50.0 + (key % 997) * 0.5 + np.round(rng.normal(0, 0.02, n), 2)
    price = np.round(mid, 2)
    bid = np.round(mid - 0.01, 2)
    ask = np.round(mid + 0.01, 2)
    quantity = rng.integers(1, 1_000, n).astype(np.float64)
    seq = np.arange(n, dtype=np.int64)
    kind = np.where(rng.random(n) < 0.8, "quote", "trade").astype(object)
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64)
    columns: dict[str, Any] = {
        "provider": provider.astype(object),
        "instrument": instrument.copy(),
        "seq": seq,
        "ts": ts,
        "type": kind,
        "price": price,
        "quantity": quantity,
        "bid": bid,
        "ask": ask,
    }
    price_valid = np.ones(n, np.bool_)
    instrument_valid = np.ones(n, np.bool_)
    bad = np.flatnonzero(rng.integers(0, bad_every, n) == 0)
    which = rng.integers(0, 8, len(bad))
    for row, w in zip(bad.tolist(), which.tolist(), strict=True):
        if w == 0:
            instrument_valid[row] = False
        elif w == 1:
            price_valid[row] = False
        elif w == 2:
            price[row] = -price[row]
        elif w == 3:
            quantity[row] = -quantity[row]
        elif w == 4:
            seq[row] = -1
        elif w == 5:
            kind[row] = "auction"
        elif w == 6:
            columns["instrument"][row] = "bad name"
        else:
            bid[row] = ask[row] + 0.05
    arrays = {name: pa.array(values, mask=None) for name, values in columns.items()}
    arrays["price"] = pa.array(price, mask=~price_valid)
    arrays["instrument"] = pa.array(columns["instrument"], pa.string(), mask=~instrument_valid)
    return pa.table(arrays)
