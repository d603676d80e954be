"""A definition's summary as the exported rules carry it: the Go template Prometheus and
Grafana expand per alert instance, made from the same ``str.format`` template the in-process
notice fills (``_notice.render``): the definition's own ``summary``, or the kind's default.

The notice fills a summary from the instance's labels, its figures and its value. An exported
rule has less: the labels its query keeps (``PromSignal.by``), the query's value, and what the
definition itself fixes. So a placeholder becomes

- a label the query keeps → ``{{ $labels.<name> }}``, and so do the kind's ``label_figures``
  (``{rule}`` of ``dlq_rate``, the notice's name for the metric's ``reason`` label);
- ``{value}``, and the figures that are that value (the kind's ``value_figures``, e.g.
  ``seconds_since_last_event`` of ``provider_silent``) → the value expression the caller
  names (Prometheus ``$value``, Grafana ``$values.A.Value``), through ``printf`` for an ``f``,
  ``e`` or ``g`` format spec (sign, zero padding, width and precision kept) and
  ``humanizePercentage`` for ``%``. Not for the kinds whose rule re-publishes an in-stream
  detector's firing gauge (``AlertKind.firing_gauge``): that rule's value is 1;
- ``{alertname}``, ``{kind}``, ``{severity}`` (the exported rule's fixed label), ``{stage}`` of
  a scoped definition whose query has no stage label, and the figures the definition fixes
  (the kind's ``summary_figures``: ``max_gap_s`` with an explicit ``threshold``...) → their
  text, formatted here with the placeholder's spec, as the notice
  formats them.

Anything else (a figure only the detector knows, such as ``{missing}``; a label the query
drops; a format spec Go cannot follow; a template ``str.format`` cannot read) is shown as
written, and :attr:`Summary.unexported` names it so the export can say so.

Literal text never reaches Go's template parser as template: every stretch holding a brace
is written as a Go string constant (``{{ "{x}" }}``), so a summary cannot inject actions.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from stampline.alerting._definitions import AlertDefinition
from stampline.alerting._kinds import KINDS

# Python's format spec, the part Go's printf can follow: sign, zero padding, width,
# precision and a float type ("" behaves as g). Fill, alignment, grouping and "#" cannot.
_SPEC = re.compile(
    r"(?P<sign>[-+ ]?)(?P<zero>0?)(?P<width>[1-9][0-9]*)?"
    r"(?:\.(?P<prec>[0-9]+))?(?P<type>[eEfFgG%]?)"
)
_BRACES = re.compile(r"[{}].*[{}]|[{}]", re.DOTALL)

PartKind = Literal["text", "label", "value"]


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of a summary: literal ``text``, a ``label`` by name, or the ``value`` with a
    Go printf verb ("" plain, "%" humanizePercentage, else e.g. ``%.1f``)."""

    kind: PartKind
    text: str


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary ready to export: its parts, the placeholders shown as written, and why the
    whole of it is (``unreadable``: the template ``str.format`` refused)."""

    parts: tuple[Part, ...]
    unexported: tuple[str, ...] = ()
    unreadable: str = ""

    def notes(self, alert_id: str) -> tuple[str, ...]:
        """What the exported rule shows as written, one line naming the alert id."""
        if self.unreadable:
            return (
                f"{alert_id}: summary is not a template ({_printable(self.unreadable)}); "
                "it is shown as written",
            )
        if not self.unexported:
            return ()
        names = ", ".join(_printable(u) for u in self.unexported)
        return (
            f"{alert_id}: summary placeholder(s) {names} have no value in the exported rule "
            "and are shown as written",
        )

    def go(self, value: str) -> str:
        """The Go template; ``value`` is how it names the value (``$value``...)."""
        out = []
        for p in self.parts:
            if p.kind == "text":
                out.append(_go_text(p.text))
            elif p.kind == "label":
                out.append("{{ $labels." + p.text + " }}")
            elif p.text == "":
                out.append("{{ " + value + " }}")
            elif p.text == "%":
                out.append("{{ " + value + " | humanizePercentage }}")
            else:
                out.append("{{ " + value + " | printf " + json.dumps(p.text) + " }}")
        return "".join(out)

    def expand(self, labels: Mapping[str, str], value: float) -> str:
        """What Prometheus makes of :meth:`go` for an instance with these labels and value
        (for the generated ``promtool`` tests)."""
        out = []
        for p in self.parts:
            if p.kind == "text":
                out.append(p.text)
            elif p.kind == "label":
                out.append(labels.get(p.text, ""))
            elif p.text == "":
                out.append(go_float(value))
            elif p.text == "%":
                out.append("%.4g%%" % (value * 100))  # Prometheus' humanizePercentage
            else:
                out.append(_printf_like_go(p.text, value))
        return "".join(out)


def exported_summary(d: AlertDefinition, labels: tuple[str, ...]) -> Summary:
    """``d``'s summary (its own, else the kind's) for a rule whose query keeps ``labels``."""
    template = d.summary or KINDS[d.kind].summary
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        # The notice shows a template str.format cannot read as written: so does the export.
        return Summary((Part("text", template),), unreadable=str(exc))
    known = _known(d, labels)
    parts: list[Part] = []
    unexported: list[str] = []
    for literal, name, spec, conversion in fields:
        if literal:
            parts.append(Part("text", literal))
        if name is None:
            continue
        written = "{" + name + (f"!{conversion}" if conversion else "")
        written += (f":{spec}" if spec else "") + "}"
        part = None if conversion else _part(known.get(name), spec or "")
        if part is None:
            # Why not refuse the export: the same definitions drive the in-process notice,
            # where this placeholder may well have a value (`{missing}` of a sequence gap,
            # known only to the gate that saw it); the notice shows a placeholder it has no
            # value for as written, and the exported rule does the same (named on export).
            parts.append(Part("text", written))
            unexported.append(written)
        else:
            parts.append(part)
    return Summary(_merged(parts), tuple(dict.fromkeys(unexported)))


def _known(d: AlertDefinition, labels: tuple[str, ...]) -> dict[str, Part | str | float]:
    """What each placeholder name is in the exported rule: a label or value part, or a
    constant of the definition (str or float, formatted with the placeholder's spec)."""
    kind = KINDS[d.kind]
    known: dict[str, Part | str | float] = {
        "alertname": d.id,
        "kind": d.kind,
        "severity": d.severity,
    }
    if d.scope.stage:
        known["stage"] = d.scope.stage  # the notice's default; a stage label wins below
    known.update(kind.summary_figures(d))
    for name in labels:
        known[name] = Part("label", name)
    for figure, label in kind.label_figures.items():
        if label in labels:
            known[figure] = Part("label", label)
    if not kind.firing_gauge:  # else the rule's value is the firing gauge, 1
        value = Part("value", "")
        known["value"] = value
        for figure in kind.value_figures:
            known[figure] = value
    return known


def _part(what: Part | str | float | None, spec: str) -> Part | None:
    """The part a placeholder with format ``spec`` becomes, or None to show it as written."""
    if what is None:
        return None
    if isinstance(what, str | float):
        try:
            return Part("text", format(what, spec))
        except (ValueError, TypeError):
            return None
    if what.kind == "label":
        return None if spec else what
    verb = _printf(spec)
    return None if verb is None else Part("value", verb)


def _printf(spec: str) -> str | None:
    """Go's verb for a Python format ``spec`` of a float ("" plain, "%" for percent)."""
    if not spec:
        return ""
    m = _SPEC.fullmatch(spec)
    if m is None:
        return None
    if m["type"] == "%":
        return "%"  # humanizePercentage: Go templates cannot multiply by 100
    prec = "" if m["prec"] is None else "." + m["prec"]
    sign = m["sign"].replace("-", "")  # "-" is Python's default, and means "left" to Go
    return f"%{sign}{m['zero']}{m['width'] or ''}{prec}{m['type'] or 'g'}"


def _printable(text: str) -> str:
    # Notes become comment lines in the rules file: a line break there would end the comment.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _merged(parts: list[Part]) -> tuple[Part, ...]:
    out: list[Part] = []
    for p in parts:
        if out and p.kind == "text" and out[-1].kind == "text":
            out[-1] = Part("text", out[-1].text + p.text)
        else:
            out.append(p)
    return tuple(out)


def _go_text(text: str) -> str:
    """Literal text for a Go template: the stretch from its first brace to its last as a Go
    string constant (JSON's string syntax is a subset of Go's)."""
    m = _BRACES.search(text)
    if m is None:
        return text
    quoted = json.dumps(m.group(), ensure_ascii=False)
    return text[: m.start()] + "{{ " + quoted + " }}" + text[m.end() :]


def _printf_like_go(verb: str, value: float) -> str:
    """Go's ``printf(verb, value)``: C's, as Python's ``%``, but for ``%g`` without a
    precision, which Go gives the shortest digits (as :func:`go_float`), not six."""
    m = re.fullmatch(r"%([+ ]?)(0?)([0-9]*)([gG])", verb)
    if m is None:
        return verb % value
    sign, zero, width, kind = m.groups()
    digits = go_float(value)
    digits = digits.upper() if kind == "G" else digits
    if sign and not digits.startswith("-"):
        digits = sign + digits
    if not width or len(digits) >= int(width):
        return digits
    if zero and digits[:1] in "+- ":
        return digits[0] + digits[1:].rjust(int(width) - 1, "0")
    return digits.rjust(int(width), "0" if zero else " ")


def go_float(value: float) -> str:
    """``value`` as Go prints a float64 (``%v``): the shortest digits that read back, in
    exponent form below 1e-4 and from 1e6 on (``1e+06``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    d = Decimal(repr(float(value))).normalize()
    exp = d.adjusted()
    if -4 <= exp < 6:
        return format(d, "f")
    sign, digits, _ = d.as_tuple()
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return ("-" if sign else "") + f"{mantissa}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
