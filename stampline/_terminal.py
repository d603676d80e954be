"""What stampline prints to a terminal shows data as text, never as instructions.

Data (provider names, ids, paths, error messages that quote input) may hold rich markup
(``[link=...]``, ``[/bold]``) or terminal control sequences (ESC, bidirectional overrides).
:class:`SafeConsole` is the one place that neutralises both for everything printed through
it: it never parses markup unless a caller asks for it explicitly, shows control characters
as ``\\xNN`` escapes, and hides remembered secrets (see :mod:`stampline._redact`). Styled
output is built with :func:`line` from (text, style) parts instead of markup.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.style import Style
from rich.text import Text

from stampline._common import visible
from stampline._redact import scrub


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
