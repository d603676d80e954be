"""Limits on environment values, checked before anything parses them.

An environment value may be JSON (a mapping of client settings, a list of topics). Python's
JSON decoder recurses per nesting level, so 20,000 nested brackets raise RecursionError; the
same limits as for YAML files (``stampline._common.load_yaml``) apply here, checked by one
linear scan.
"""

from __future__ import annotations

MAX_DEPTH = 64
"""Deepest nesting of JSON arrays and objects (the YAML files' limit too)."""
MAX_ENV_CHARS = 64 * 1024
"""Longest environment value read as configuration, in characters."""


def json_text_problem(text: str) -> str | None:
    """Why ``text`` is refused before decoding (too long, nested too deep), or None."""
    if len(text) > MAX_ENV_CHARS:
        return f"the value is longer than {MAX_ENV_CHARS:,} characters"
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return f"the value is nested more than {MAX_DEPTH} levels deep"
        elif ch in "]}":
            depth -= 1
    return None
