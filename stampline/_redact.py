"""Secrets never reach a terminal, a log line or an error message.

Two layers, because a secret can arrive in a shape nobody parsed (a malformed JSON
environment value, a librdkafka error echoing its configuration):

1. by key: a value under a secret-looking key (``password``, ``secret``, ``token``,
   ``sasl.*``, ``ssl.key.*``, ...) is shown as ``***`` wherever a key/value is shown;
2. by value: every secret value the configuration brought in (file or environment, parsed
   or not) is remembered, and every line stampline prints or logs has them replaced by
   ``***`` on its way out (:func:`scrub`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from stampline._common import MASK, mask_urls, visible
from stampline._limits import json_text_problem

# A key path part naming a secret. `sasl.*` and `ssl.key.*` are librdkafka's credential
# families; the rest are words every credential key uses somewhere.
_SECRET_KEY = re.compile(
    r"(passw(or)?d|secret|token|credential|api[._-]?key|private[._-]?key|"
    r"(^|[._])sasl[._]|(^|[._])ssl[._]key[._]|"
    r"(^|[._])auth(orization)?$|bearer)",
    re.IGNORECASE,
)
# A secret shorter than this is too likely to occur by chance inside ordinary text (a
# password "a" would mask every "a"); the by-key layer still hides it where it is a value.
_MIN_SCRUB_LEN = 3

_lock = threading.Lock()
_known: set[str] = set()
_pattern: re.Pattern[str] | None = None


def is_secret_key(key: str) -> bool:
    """Whether a configuration key (a dotted path or a librdkafka name) names a secret."""
    return _SECRET_KEY.search(key) is not None


def redact(key: str, value: Any) -> Any:
    """``value`` as it may be shown under ``key``: masked when the key names a secret, and
    with the secret entries of a mapping masked inside it."""
    if value is None:
        return None
    if is_secret_key(key):
        return MASK
    if isinstance(value, Mapping):
        return {k: redact(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, str):
        return scrub(value)
    return value


def remember(values: Iterable[Any]) -> None:
    """Add secret values to those :func:`scrub` hides from now on."""
    global _pattern
    new = {str(v) for v in values if v is not None and len(str(v)) >= _MIN_SCRUB_LEN}
    with _lock:
        if new <= _known:
            return
        _known.update(new)
        # Longest first, so a secret containing another is hidden whole.
        alternatives = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def forget_all() -> None:
    """Forget every remembered secret (for tests that need a clean slate)."""
    global _pattern
    with _lock:
        _known.clear()
        _pattern = None


def scrub(text: str) -> str:
    """``text`` with every remembered secret value replaced by ``***``, and the credentials
    of every URL in it masked (user info, token-like query parameters)."""
    pattern = _pattern
    return mask_urls(text if pattern is None else pattern.sub(MASK, text))


def remember_in(data: Any, path: str = "") -> None:
    """Remember the values under secret keys anywhere in parsed configuration ``data``."""
    found: list[Any] = []
    _collect(data, path, found)
    remember(found)


def _collect(data: Any, path: str, found: list[Any]) -> None:
    if isinstance(data, Mapping):
        for k, v in data.items():
            child = f"{path}.{k}" if path else str(k)
            if is_secret_key(str(k)) and not isinstance(v, Mapping | list):
                found.append(v)
            _collect(v, child, found)
    elif isinstance(data, list):
        for item in data:
            _collect(item, path, found)
    elif isinstance(data, str):
        found.extend(m.group(1) for m in _URL_PASSWORD.finditer(data))
        if data.lstrip().startswith("{"):
            _collect_text(data, found)


# The password in a URL's user info: http://user:S3cr3t@host (or http://:S3cr3t@host).
_URL_PASSWORD = re.compile(r"://[^/:@\s]*:([^@/\s]+)@")
# `"sasl.password": "S3cr3t"` or `sasl.password=S3cr3t` inside text that may not parse.
_PAIR = re.compile(
    r"""["']?(?P<key>[A-Za-z0-9_.\-]+)["']?\s*[:=]\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^,}\s]+))"""
)


def _collect_text(text: str, found: list[Any]) -> None:
    try:
        if json_text_problem(text):
            raise ValueError("not decoded: past the limits")
        parsed = json.loads(text)
    except ValueError:
        # Not JSON (a trailing comma, a missing quote): find key/value pairs the way a
        # person reading it would, so the value is hidden even though nothing parsed it.
        found.extend(
            m.group("dq") or m.group("sq") or m.group("bare")
            for m in _PAIR.finditer(text)
            if is_secret_key(m.group("key"))
        )
    else:
        _collect(parsed, "", found)


def remember_environment(prefix: str) -> None:
    """Remember secrets in the ``prefix`` environment variables: the value of every variable
    whose name names a secret, and secret entries inside mapping values (parsed or not)."""
    found: list[Any] = []
    for name, value in os.environ.items():
        if not name.upper().startswith(prefix):
            continue
        if is_secret_key(name.lower().replace("__", ".")):
            found.append(value)
        else:
            _collect(value, "", found)
    remember(found)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose lines carry no remembered secret and no terminal control code,
    and whose message stays on one line (a newline in data cannot forge another log line);
    only a traceback adds lines."""

    def format(self, record: logging.LogRecord) -> str:
        # A copy: other handlers (a test's capture) see the record as it was logged.
        one_line = logging.makeLogRecord(record.__dict__)
        one_line.msg = visible(scrub(record.getMessage()), keep_newlines=False)
        one_line.args = None
        return visible(scrub(super().format(one_line)), keep_newlines=True)


def scrub_data(data: Any) -> Any:
    """``data`` (JSON-like) with every remembered secret hidden in its strings."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, Mapping):
        return {scrub_data(k): scrub_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [scrub_data(v) for v in data]
    return data
