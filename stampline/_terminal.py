"""What stampline prints to a terminal shows data as text, never as instructions.

Data (provider names, ids, paths, error messages that quote input) may hold rich markup
(``[link=...]``, ``[/bold]``) or terminal control sequences (ESC, bidirectional overrides).
:class:`SafeConsole` is the one place that neutralises both for everything printed through
it: it never parses markup unless a caller asks for it explicitly, shows control characters
as ``\\xNN`` escapes, and hides remembered secrets (see :mod:`stampline._redact`). Styled
output is built with :func:`line` from (text, style) parts instead of markup.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.style import Style
from rich.text import Text

from stampline._redact import scrub

# C0 and C1 control characters, DEL, and the Unicode bidirectional controls that can
# reorder what a terminal shows ("Trojan Source"). Newline and tab are handled apart.
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


def clean(value: Any) -> str:
    """One value from data, fit to show on one line: secrets hidden, controls escaped."""
    return visible(scrub(str(value)), keep_newlines=False)


def line(*parts: str | tuple[str, str]) -> Text:
    """A styled line from plain strings and (text, style) pairs; nothing in it is markup."""
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(clean(part[0]), style=part[1])
        else:
            text.append(clean(part))
    return text


def styled(value: Any, style: str) -> Text:
    """One value from data in ``style``."""
    return Text(clean(value), style=style)


class SafeConsole(Console):
    """A rich console for output that holds data: markup and emoji codes off by default,
    control characters escaped and secrets hidden in every string it renders (printed
    strings, table cells and titles all pass through :meth:`render_str`)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        super().__init__(**kwargs)

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: Any = None,
        overflow: Any = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: Any = None,
    ) -> Text:
        return super().render_str(
            visible(scrub(text)),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=emoji,
            markup=markup,
            highlight=highlight,
            highlighter=highlighter,
        )
