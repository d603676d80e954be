# The Rust extension module built from native/ (docs/native.md); absent when built without cargo.
from typing import Any

def digest_table(
    table: Any, order: Any, columns: list[tuple[str, str]], threads: int
) -> tuple[str, list[str]]: ...
