# The Rust extension module built from native/ (docs/native.md); absent when built without cargo.
from typing import Any

def digest_table(
    table: Any, order: Any, columns: list[tuple[str, str]], threads: int
) -> tuple[str, list[str]]: ...
def read_stamps_batch(
    batch: list[Any], stamps_type: type[Any], stage_type: type[Any]
) -> tuple[list[Any], list[tuple[int, str]]]: ...

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
) -> tuple[bytes, list[str], list[str], list[int], bytes, bytes]: ...

class Schema:
    def __init__(self, text: str) -> None: ...
