"""Text fit to show: control characters made visible, and URL secrets masked.

Two functions every output path needs (terminal, log line, error message, report, written
file), kept in the leaf so the shell and every component share one definition.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

MASK = "***"
"""What a secret value is shown as."""

# C0 and C1 control characters, DEL, and the Unicode bidirectional controls that can
# reorder what a reader sees ("Trojan Source"). Newline and tab are handled apart.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_LINES = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``).

    ``keep_newlines`` keeps newlines and tabs as they are (a message of several lines);
    without it, a value is forced onto one line.
    """
    return (_CONTROL if keep_newlines else _CONTROL_OR_LINES).sub(_escape, text)


def shown_value(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was: an error message
    echoes what it refused, and an endless name must not become an endless message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def control_characters(text: str, *, keep_newlines: bool = True) -> list[tuple[int, int]]:
    """The (start, end) spans of the characters :func:`visible` would escape."""
    pattern = _CONTROL if keep_newlines else _CONTROL_OR_LINES
    return [m.span() for m in pattern.finditer(text)]


# A URL's user info, `scheme://user:password@` or `scheme://token@`: it cannot hold `/`, and
# it ends at the last `@` before the host.
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#\s@]*(?:@[^/?#\s@]*)*)@"
)
# Words in the name of a query parameter that carries a credential (`token`, `api_key`,
# `X-Amz-Signature`, ...).
_SECRET_WORDS = "token|secret|passw|pwd|key|auth|sig|credential|session"
_SECRET_PARAM = re.compile(
    rf"(?P<name>[?&;][^=&#\s]*(?:{_SECRET_WORDS})[^=&#\s]*=)[^&#\s\"'<>]*", re.IGNORECASE
)
_SECRET_NAME = re.compile(_SECRET_WORDS, re.IGNORECASE)


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter named ``name`` carries a credential."""
    return _SECRET_NAME.search(name) is not None


def _mask_info(m: re.Match[str]) -> str:
    user, sep, _secret = m.group("info").partition(":")
    # Without a `:` the whole user info may be a token (https://TOKEN@host).
    return f"{m.group('scheme')}{user}:{MASK}@" if sep else f"{m.group('scheme')}{MASK}@"


def mask_urls(text: str) -> str:
    """``text`` with the credentials of every URL in it masked: the password (or a lone
    token) of the user info, and the value of every token-like query parameter."""
    if "://" not in text and "=" not in text:
        return text
    return _SECRET_PARAM.sub(rf"\g<name>{MASK}", _USERINFO.sub(_mask_info, text))


def url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user info, and the user and password it held (percent-decoded;
    None when absent), so the credentials can travel in a header instead."""
    parts: SplitResult = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    info, _, host = parts.netloc.rpartition("@")
    user, sep, password = info.partition(":")
    bare = parts._replace(netloc=host).geturl()
    return bare, unquote(user), unquote(password) if sep else None
