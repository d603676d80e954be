"""The evidence document as one self-contained HTML page: inline styles, an inline SVG chart,
no scripts and nothing fetched, so it renders the same offline, in a browser or as a PDF.
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import Any

from stampline._common import control_characters, visible, where
from stampline.audit import format_ns

# Stage colours: a fixed palette, picked by a stable hash of the stage name.
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
_KIND_COLOUR = {"origin": "#555555", "broker": "#aaaaaa"}

_CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;font-size:12px;color:#111;margin:24px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:22px 0 6px;border-bottom:1px solid #ccc}
h3{font-size:13px;margin:14px 0 4px} h2,h3{break-after:avoid}
table{border-collapse:collapse;margin:4px 0 10px;width:100%}
th,td{border:1px solid #ccc;padding:2px 5px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,.mono{font-family:"DejaVu Sans Mono",monospace;font-size:11px;word-break:break-all}
.nw{white-space:nowrap;word-break:normal}
.ok{color:#1a7f37} .bad{color:#b42318;font-weight:bold} .warn{color:#9a6700}
.meta td{border:none;padding:1px 8px 1px 0}
svg{border:1px solid #ddd;background:#fff}
.banner{border:3px solid #b42318;background:#fde8e8;color:#b42318;padding:8px 12px;margin:8px 0}
.banner b{font-size:15px} .mark{color:#b42318;font-weight:bold}
tr.affected td{background:#fde8e8}
.ctl{font-family:"DejaVu Sans Mono",monospace;color:#b42318;background:#fde8e8}
@page{size:A4 landscape;margin:12mm} tr{page-break-inside:avoid}
"""


def _colour(stage: str, kind: str) -> str:
    if kind in _KIND_COLOUR:
        return _KIND_COLOUR[kind]
    return _PALETTE[hashlib.sha256(stage.encode()).digest()[0] % len(_PALETTE)]


def ns_text(ns: int | None) -> str:
    """A duration in the unit that keeps it readable, exact to the nanosecond below 1 ms."""
    if ns is None:
        return "—"
    a, sign = abs(ns), "-" if ns < 0 else ""
    if a < 1_000:
        return f"{sign}{a} ns"
    if a < 1_000_000:
        return f"{sign}{a / 1_000:.3f} µs"
    if a < 1_000_000_000:
        return f"{sign}{a / 1_000_000:.3f} ms"
    return f"{sign}{a / 1_000_000_000:.3f} s"


def _a(value: Any) -> str:
    """A value for an attribute, a ``<title>`` or SVG text: escaped, control and bidi
    characters shown as ``\\u202e``-style escapes (no markup fits there)."""
    return escape(visible(str(value), keep_newlines=False), quote=True)


def _e(value: Any) -> str:
    """A value for the page's text: escaped, and each control or bidirectional character
    (ESC, U+202E, ...) shown as its escape in a marked span, so it can neither reorder what
    the reader sees nor pass for ordinary text."""
    text = str(value)
    out: list[str] = []
    last = 0
    for start, end in control_characters(text):
        out.append(escape(text[last:start], quote=True))
        out.append(f'<span class="ctl">{escape(visible(text[start:end]))}</span>')
        last = end
    out.append(escape(text[last:], quote=True))
    return "".join(out)


def _source_text(src: dict[str, Any] | None) -> str:
    if src is None:
        return "—"
    kind = src["kind"]
    if kind == "chrony":
        return (
            f"chrony: offset {ns_text(src['offset_ns'])}, dispersion "
            f"{ns_text(src['root_dispersion_ns'])}, delay {ns_text(src['root_delay_ns'])}"
        )
    if kind in ("fallback", "unknown"):
        return f"{kind}: {src.get('reason', '')}"
    return str(kind)


def chart(doc: dict[str, Any], width: int = 1000) -> str:
    """The lineage timeline: one lane per event, each stamp a dot on one time axis, its
    clock-error bound as a bar around it, coloured by stage."""
    events = [e for e in doc["events"] if e["stamps"]]
    times = [s["time_ns"] for e in events for s in e["stamps"]]
    if not times:
        return '<p id="chart">No stamps to chart.</p>'
    left, right, lane, top = 200, 20, 30, 30
    height = top + lane * len(events) + 40
    t0, t1 = min(times), max(times)
    span = max(t1 - t0, 1)
    plot = width - left - right

    def x(t: int) -> float:
        return float(left + (t - t0) / span * plot)

    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage timeline">'
    ]
    for i in range(6):
        tx = left + plot * i / 5
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - 30}" '
            'stroke="#eee"/>'
            f'<text x="{tx:.1f}" y="{height - 14}" font-size="10" '
            f'text-anchor="{"start" if i == 0 else "end" if i == 5 else "middle"}">'
            f"+{_a(ns_text(span * i // 5))}</text>"
        )
    for row, e in enumerate(events):
        y = top + lane * row + lane / 2
        parts.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_a(e['role'])} {_a(e['label'])}</text>"
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#ccc"/>'
        )
        for s in e["stamps"]:
            cx, colour = x(s["time_ns"]), _colour(s["stage"], s["kind"])
            bound = s.get("bound_ns")
            if bound:
                w = bound / span * plot
                parts.append(
                    f'<rect class="bound" x="{cx - w:.2f}" y="{y - 3:.1f}" width="{2 * w:.2f}" '
                    f'height="6" fill="{colour}" opacity="0.25"/>'
                )
            parts.append(
                f'<circle class="stamp" data-event="{_a(e["event_id"])}" '
                f'data-stage="{_a(s["stage"])}" cx="{cx:.2f}" cy="{y:.1f}" r="5" '
                f'fill="{colour}"><title>{_a(s["stage"])} {_a(s["time"])} '
                f"± {_a(ns_text(bound))}</title></circle>"
            )
    parts.append(
        f'<text x="{left}" y="{top - 14}" font-size="10">time from {_a(_first_time(doc))} '
        "(UTC); bars: clock-error bound</text></svg>"
    )
    stages = sorted({(s["stage"], s["kind"]) for e in events for s in e["stamps"]})
    legend = " ".join(f'<span style="color:{_colour(st, k)}">●</span> {_e(st)}' for st, k in stages)
    return "".join(parts) + f'<p class="legend">{legend}</p>'


def _first_time(doc: dict[str, Any]) -> str:
    stamps = [s for e in doc["events"] for s in e["stamps"]]
    return min(stamps, key=lambda s: s["time_ns"])["time"] if stamps else ""


def verdict_text(regime: dict[str, Any]) -> str:
    """A stamp's tier verdict with its reasons: the bound (or, for a broker's time, the
    divergence left after its millisecond) against the tier, and the granularity and whose
    it is."""
    v = regime["verdict"]
    if "tier" not in regime:
        return f"{v}: another party's clock"
    div, limit = regime["divergence_ns"], regime["max_divergence_ns"]
    what = "bound" if regime["granularity_from"] == "digits" else "divergence"
    part = f"{what} {ns_text(div)} {'≤' if regime['bound_ok'] else '>'} {ns_text(limit)}"
    gran, need = regime["observed_granularity_ns"], regime["granularity_ns"]
    cmp = "≤" if regime["granularity_ok"] else ">"
    if regime["granularity_from"] == "broker":
        part += " (bound less the broker's millisecond)"
        grain = f"granularity {ns_text(gran)} {cmp} {ns_text(need)}: the broker's timestamp"
    else:
        grain = f"granularity ≤ {ns_text(gran)} by the stamp's digits, {ns_text(need)} needed"
    return f"{v}: {part}; {grain} (tier {regime['tier']})"


def _verdict_cell(regime: dict[str, Any]) -> str:
    cls = {"meets": "ok", "fails": "bad", "unproven": "warn"}.get(regime["verdict"], "")
    return f'<td class="verdict {cls}">{_e(verdict_text(regime))}</td>'


def _mark(notes: list[str] | None) -> str:
    """The mark on a value from a batch or chain that failed verification."""
    return f' <span class="mark">⚠ {_e("; ".join(notes))}</span>' if notes else ""


def _row_class(name: str, notes: Any) -> str:
    return f'class="{name} affected"' if notes else f'class="{name}"'


def _event_section(e: dict[str, Any]) -> str:
    source = where(e["source"]["topic"], e["source"]["partition"], e["source"]["offset"])
    head = (
        f'<h3 id="ev-{_e(e["event_id"])}">{_e(e["role"])} <code>{_e(e["event_id"])}</code>'
        f" {_e(e['provider'])} {_e(e['instrument'])}</h3>"
        f"<p>source {_e(source)}; outcome <b>{_e(e['rules']['outcome'])}</b>"
        + (f"; parents {len(e['parents'])}" if e["parents"] else "")
        + "</p>"
    )
    if not e["observed"]:
        return head + '<p class="warn">Never observed by stampline: no stamps.</p>'
    rows = "".join(
        f"<tr {_row_class('stamp-row', s.get('affected'))}><td>{_e(s['stage'])}"
        f"{_mark(s.get('affected'))}</td><td>{_e(s['kind'])}</td>"
        f'<td class="mono nw">{_e(s["time"])}</td><td>{_e(s["host"] or "—")}</td>'
        f'<td class="num bound nw">{_e(ns_text(s["bound_ns"]))}</td>'
        f"<td>{_e(_source_text(s['bound_source']))}</td>{_verdict_cell(s['regime'])}</tr>"
        for s in e["stamps"]
    )
    stamps = (
        "<table><tr><th>stamp</th><th>kind</th><th>time (UTC)</th><th>host</th>"
        "<th>± bound</th><th>bound source</th><th>tier verdict</th></tr>"
        f"{rows}</table>"
    )
    marked = e.get("affected")
    irows = "".join(
        f"<tr {_row_class('interval-row', marked)}><td>{_e(i['span'])}{_mark(marked)}</td>"
        f'<td class="num">{_e(ns_text(i["value_ns"]))}</td>'
        f'<td class="num">± {_e(ns_text(i["bound_ns"]))}</td>'
        f'<td class="{"warn" if i["flags"] else "ok"}">{_e("; ".join(i["flags"]) or "certain")}'
        "</td></tr>"
        for i in e["intervals"]
    )
    intervals = (
        "<table><tr><th>stage / hop</th><th>value</th><th>combined bound</th><th>flags</th></tr>"
        f"{irows}</table>"
        if irows
        else ""
    )
    vrows = "".join(
        f"<tr {_row_class('verdict-row', marked)}><td>{_e(v['rule_id'])}{_mark(marked)}</td>"
        f"<td>v{_e(v['rule_version'])}</td>"
        f'<td class="{"bad" if v["severity"] == "error" else "warn"}">{_e(v["severity"])}</td>'
        f"<td>{_e(v['reason'] or '—')}</td>"
        f'<td class="mono rule-sha">{_e(v["rule_file_sha256"] or "not recorded")}</td>'
        f"<td>{_rule_file(v['rule_file'])}</td></tr>"
        for v in e["rules"]["verdicts"]
    )
    verdicts = (
        "<table><tr><th>rule</th><th>version</th><th>verdict</th><th>reason</th>"
        "<th>rule file SHA-256 at the verdict</th><th>rule file given now</th></tr>"
        f"{vrows}</table>"
        if vrows
        else f"<p>Rule verdicts: passed every rule ({_e(e['rules']['outcome'])}).</p>"
    )
    return head + stamps + intervals + verdicts


def _rule_file(f: dict[str, Any] | None) -> str:
    if f is None:
        return "not given"
    notes = ["same version" if f["same_version"] else f"now v{f['version_now']}"]
    if f["same_file"] is not None:
        notes.append("same file" if f["same_file"] else "file changed since the verdict")
    return f"{_e(f['path'])} <code>{_e(f['sha256'][:16])}…</code> ({_e(', '.join(notes))})"


def _chains(i: dict[str, Any]) -> str:
    rows = "".join(
        f'<tr class="chain-row"><td class="mono nw">{_e(c["chain_id"])}</td>'
        f'<td class="num">{_e(c["head_batch"])}</td>'
        f'<td><code class="head">{_e(c["head"])}</code></td></tr>'
        for c in i["chains"]
    )
    return (
        f"<table><tr><th>chain</th><th>head batch</th><th>head (SHA-256)</th></tr>{rows}</table>"
        if rows
        else '<p class="warn">The ledger holds no chain.</p>'
    )


def _checked(i: dict[str, Any]) -> str:
    v = i["verified_at_production"]
    if v is None:
        return "<p>The chains were not verified when this report was produced.</p>"
    if v["ok"]:
        return (
            f'<p class="ok">Verified when produced: {_e(v["batches"])} batches, '
            f"{_e(v['rows'])} rows, {_e(v['dead_letters'])} dead letters in "
            f"{len(v['chain_heads'])} chain(s), every digest and link intact.</p>"
        )
    return (
        f'<p class="bad">Verification FAILED when produced: {len(v["findings"])} '
        f"finding(s):</p><ul>{_findings(v['findings'])}</ul>"
    )


def finding_text(f: dict[str, Any]) -> str:
    """One verification finding in words: where, what, and the columns or detail."""
    where_ = f"{f['chain']} batch {f['batch']}" if f["batch"] else f["chain"] or "the store"
    extra = ", ".join(f.get("changed_columns") or [])
    detail = f.get("detail") or (f"columns {extra}" if extra else "")
    return f"{where_}: {f['problem']}" + (f" ({detail})" if detail else "")


def _findings(findings: list[dict[str, Any]]) -> str:
    return "".join(f'<li class="finding">{_e(finding_text(f))}</li>' for f in findings)


def _banner(doc: dict[str, Any]) -> str:
    """Page 1's warning when the store failed verification while the report was produced."""
    v = doc["integrity"]["verified_at_production"]
    if v is None or v["ok"]:
        return ""
    marked = (
        " Every value shown from a batch or chain that failed is marked ⚠: do not rely on it."
        if doc["subject"]["kind"] != "period"
        else " The period's figures are read from that store: do not rely on them."
    )
    return (
        '<div class="banner" id="verification-failed"><b>VERIFICATION FAILED</b> when this '
        f"report was produced: the audit trail does not match its hash chains "
        f"({len(v['findings'])} finding(s)).<ul>{_findings(v['findings'])}</ul>{_e(marked)}"
        "</div>"
    )


def _contested_banner(doc: dict[str, Any]) -> str:
    """Page 1's warning when chains hold different rows for a value shown."""
    found = doc["integrity"].get("contested") or []
    items = "".join(
        f'<li class="contested">{_e(c["event_id"])} {_e(c["stage"])}: chains '
        f"{_e(', '.join(c['chains']))}</li>"
        for c in found
    )
    return _contested_div(
        "CONTESTED VALUES",
        f"{len(found)} of the stamps shown. Each is marked ⚠ with the chains; the row shown is "
        "one of them, not a verdict.",
        items,
    )


def _period_contested_banner(doc: dict[str, Any]) -> str:
    """Page 1's warning when chains hold different rows for stamps in the period."""
    items = "".join(
        f'<li class="contested">{_e(c["stage"])}: {_e(c["stamps"])} stamp(s) between '
        f"{_e(c['first'])} and {_e(c['last'])}, chains {_e(', '.join(c['chains']))}</li>"
        for c in doc.get("contested") or []
    )
    return _contested_div(
        "CONTESTED STAMPS",
        "these stamps. They are left out of every figure below (their host, time and bound "
        "depend on which chain is real), and the time they span is marked on the chart.",
        items,
    )


def _contested_div(title: str, what: str, items: str) -> str:
    """The contested banner around ``items`` (nothing without any): what the chains hold
    differently, and the one check that tells a made-up chain from a real one."""
    if not items:
        return ""
    return (
        f'<div class="banner" id="contested"><b>{title}</b>: the audit trail holds different '
        f"rows in different hash chains for {what}<ul>{items}</ul>Only <code>stampline audit "
        "verify</code> with every chain's head (below) tells a made-up chain from a real one."
        "</div>"
    )


def _integrity(doc: dict[str, Any]) -> str:
    i = doc["integrity"]
    rows = "".join(
        f'<tr class="batch-row"><td class="mono nw">{_e(b["chain_id"])}</td>'
        f'<td class="num">{_e(b["batch"])}</td><td>{_e(b["kind"])}</td>'
        f'<td class="num">{_e(b["rows"])}</td><td class="mono nw">{_e(b["written"])}</td>'
        f'<td class="mono">{_e(b["digest"])}</td><td class="mono">{_e(b["chain"])}</td>'
        f'<td class="num">{_e(b["links_to_head"])}</td></tr>'
        for b in i["batches"]
    )
    missing = "".join(
        f"<li><code>{_e(u['chain_id'])}</code> batch {_e(u['batch'])} ({_e(u['kind'])}): "
        f"{_e(', '.join(u['holds']))}</li>"
        for u in i["unledgered"]
    )
    return (
        f"<p>{_e(i['scheme'])}.</p>"
        "<h3>Batches holding the rows shown</h3>"
        "<table><tr><th>chain</th><th>batch</th><th>kind</th><th>rows</th><th>written</th>"
        f"<th>digest</th><th>chain value</th><th>links to head</th></tr>{rows}</table>"
        + (
            f'<p class="bad">Rows in no ledgered batch (no chain vouches for them):</p>'
            f"<ul>{missing}</ul>"
            if missing
            else ""
        )
        + f"<h3>Chain heads when produced</h3>{_chains(i)}"
        f"{_checked(i)}<p>Re-verify: <code>{_e(i['verify_command'])}</code></p>"
    )


def _provenance(doc: dict[str, Any]) -> str:
    p = doc["produced"]
    inputs = "".join(
        f"<tr><td>{_e(f['role'])}</td><td>{_e(f['path'])}</td>"
        f'<td class="mono">{_e(f["sha256"])}</td></tr>'
        for f in p["inputs"]
    )
    return (
        f'<table class="meta"><tr><td>software</td><td>{_e(p["software"])}</td></tr>'
        f"<tr><td>produced</td><td>{_e(p['at'])}</td></tr>"
        f"<tr><td>configuration hash</td><td><code>{_e(p['config_sha256'] or 'none given')}"
        "</code></td></tr></table>"
        + (
            f"<table><tr><th>input</th><th>path</th><th>SHA-256</th></tr>{inputs}</table>"
            if inputs
            else "<p>No configuration or rule files were given.</p>"
        )
    )


def _regime(doc: dict[str, Any]) -> str:
    r = doc["regime"]
    stages = ", ".join(f"{stage}: {tier}" for stage, tier in r["stages"].items())
    return (
        f'<p id="tier">{_e(r["title"])} ({_e(r["id"])} {_e(r["version"])}), tier '
        f"<b>{_e(r['tier'])}</b> ({_e(r['applies_to'])}): divergence from UTC ≤ "
        f"{_e(ns_text(r['max_divergence_ns']))}, granularity ≤ "
        f"{_e(ns_text(r['granularity_ns']))}; {_e(r['declared'])}."
        + (f" Stages with a tier of their own: {_e(stages)}." if stages else "")
        + " A stamp <i>meets</i> its tier when its host's bound is within the divergence and "
        "its clock shows the granularity: a stage's stamp by its digits, a tap's sighting by "
        "the broker's millisecond timestamp (the millisecond the tap adds to its bound is "
        "that granularity, not divergence); <i>fails</i> when the bound is over the divergence; "
        "<i>unproven</i> when its trailing zeros cannot show the granularity; origin and broker "
        "stamps are other parties' clocks and <i>outside</i> it.</p>"
    )


def _latency(doc: dict[str, Any]) -> str:
    """Each input received -> the decision made: the interval a regulator asks about."""
    lat = doc.get("latency")
    if not lat:
        return ""
    d = lat["decided"]
    if d is None:
        return '<h2>Decision latency</h2><p class="warn">No stamp of the decision made.</p>'
    rows = "".join(
        f"<tr {_row_class('latency-row', i['affected'])}><td>{_e(i['label'])}"
        f"{_mark(['from a batch that failed verification'] if i['affected'] else None)}</td>"
        f'<td class="mono nw">{_e(i["received"] or "—")}</td><td>{_e(i["received_at"] or "—")}'
        f'</td><td class="num latency">{_e(_pm(i["value_ns"], i["bound_ns"]))}</td>'
        f'<td class="{"warn" if i["flags"] else "ok"}">{_e("; ".join(i["flags"]) or "certain")}'
        "</td></tr>"
        for i in lat["inputs"]
    )
    return (
        "<h2>Decision latency</h2>"
        f"<p>Each input received → decision made at <b>{_e(d['stage'])}</b> "
        f"<code>{_e(d['time'])}</code> (± {_e(ns_text(d['bound_ns']))}); value ± the two "
        "stamps' bounds added.</p>"
        "<table><tr><th>input</th><th>received (UTC)</th><th>by</th>"
        f"<th>received → decided</th><th>flags</th></tr>{rows}</table>"
    )


def _pm(value: int | None, bound: int | None) -> str:
    return "—" if value is None else f"{ns_text(value)} ± {ns_text(bound)}"


def _period_chart(doc: dict[str, Any], width: int = 1000) -> str:
    """One lane per host and stage across the period: green where its stamps cover the time
    and it was within the tier, red for excursions beyond it, blank where no stamp says."""
    clocks = doc["clocks"]
    if not clocks:
        return '<p id="chart">No stamps in this period.</p>'
    lo, hi = _period_ns(doc)
    left, right, lane, top = 200, 20, 26, 16
    plot, span = width - left - right, max(hi - lo, 1)
    height = top + lane * len(clocks) + 20

    def x(t: int) -> float:
        return left + (t - lo) / span * plot

    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="excursions over the period">'
    ]
    for row, c in enumerate(clocks):
        y = top + lane * row
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" font-size="11" text-anchor="end">'
            f"{_a(c['host'])} / {_a(c['stage'])}</text>"
            f'<rect class="lane" x="{left}" y="{y + 4}" width="{plot}" height="14" '
            'fill="none" stroke="#ccc"/>'
            f'<rect class="covered" x="{x(c["first_ns"]):.2f}" y="{y + 4}" '
            f'width="{max(c["covered_ns"] / span * plot, 1.0):.2f}" height="14" fill="#2ca02c">'
            f"<title>stamps {_a(c['first'])} – {_a(c['last'])}</title></rect>"
        )
        for k in (k for k in doc.get("contested") or [] if k["stage"] == c["stage"]):
            w = max((k["last_ns"] - k["first_ns"]) / span * plot, 1.0)
            parts.append(
                f'<rect class="contested" x="{x(k["first_ns"]):.2f}" y="{y + 1}" '
                f'width="{w:.2f}" height="3" fill="#ff7f0e"><title>contested: '
                f"{_a(k['first'])} – {_a(k['last'])}, {_a(k['stamps'])} stamp(s)</title></rect>"
            )
        for ex in c["excursions"]:
            w = max(ex["duration_ns"] / span * plot, 1.0)
            parts.append(
                f'<rect class="excursion" x="{x(ex["start_ns"]):.2f}" y="{y + 4}" '
                f'width="{w:.2f}" height="14" fill="#d62728"><title>{_a(ex["start"])} – '
                f"{_a(ex['end'])} peak {_a(ns_text(ex['peak_ns']))}</title></rect>"
            )
    parts.append(
        f'<text x="{left}" y="{height - 4}" font-size="10">{_a(doc["subject"]["from"])}</text>'
        f'<text x="{width - right}" y="{height - 4}" font-size="10" text-anchor="end">'
        f"{_a(doc['subject']['to'])}</text></svg>"
    )
    legend = (
        '<p class="legend"><span style="color:#2ca02c">■</span> within the tier, over the time '
        'its stamps cover (first to last) <span style="color:#d62728">■</span> beyond the tier '
        '(an excursion) <span style="color:#999">□</span> no stamps: not counted, '
        "nothing is known of the clock there"
        + (
            ' <span style="color:#ff7f0e">▬</span> contested: chains hold different stamps '
            "there, left out of the figures"
            if doc.get("contested")
            else ""
        )
        + "</p>"
    )
    return "".join(parts) + legend


def _period_ns(doc: dict[str, Any]) -> tuple[int, int]:
    from datetime import datetime

    def ns(text: str) -> int:
        whole, frac = text.rstrip("Z").split(".")
        dt = datetime.fromisoformat(whole + "+00:00")
        return int(dt.timestamp()) * 1_000_000_000 + int(frac)

    return ns(doc["subject"]["from"]), ns(doc["subject"]["to"])


def _granularity(c: dict[str, Any]) -> str:
    if c["granularity_from"] == "broker":
        return f"{ns_text(c['observed_granularity_ns'])}: the broker's timestamp"
    return f"≤ {ns_text(c['observed_granularity_ns'])} by the stamps' digits"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _period_body(doc: dict[str, Any]) -> str:
    rows = []
    for c in doc["clocks"]:
        b = c["bound_ns"]
        sources = "; ".join(
            f"{s['kind']} ×{s['stamps']}" + (f" ({s['reason']})" if s.get("reason") else "")
            for s in c["sources"]
        )
        rows.append(
            f'<tr class="clock-row"><td>{_e(c["host"])}</td><td>{_e(c["stage"])}</td>'
            f'<td class="num">{_e(c["stamps"])}</td>'
            f'<td class="num covered">{_e(ns_text(c["covered_ns"]))}</td>'
            f"<td>{_e(c['tier'])}</td>"
            f'<td class="num">{_e(ns_text(b["p50"]))}</td><td class="num">{_e(ns_text(b["p99"]))}'
            f'</td><td class="num">{_e(ns_text(b["max"]))}</td>'
            f'<td class="num">{c["within_tier_stamps_share"]:.2%}</td>'
            f'<td class="num">{_share(c["within_tier_time_share"])}</td>'
            f'<td class="{"ok" if c["granularity_ok"] else "warn"}">'
            f"{_e(_granularity(c))}</td><td>{_e(sources)}</td></tr>"
        )
    table = (
        "<table><tr><th>host</th><th>stage</th><th>stamps</th><th>time covered</th>"
        "<th>tier</th><th>bound p50</th><th>p99</th>"
        "<th>max</th><th>stamps within tier</th><th>covered time within tier</th>"
        f"<th>granularity</th><th>bound sources</th></tr>{''.join(rows)}</table>"
    )
    ex = "".join(
        f'<tr class="excursion-row"><td>{_e(c["host"])}</td><td>{_e(c["stage"])}</td>'
        f'<td class="mono">{_e(x["start"])}</td><td class="mono">{_e(x["end"])}</td>'
        f'<td class="num">{_e(ns_text(x["duration_ns"]))}</td>'
        f'<td class="num bad">{_e(ns_text(x["peak_ns"]))}</td><td class="num">{x["stamps"]}</td>'
        f"<td>{'still out at the last stamp' if x['ongoing_at_last_stamp'] else ''}</td></tr>"
        for c in doc["clocks"]
        for x in c["excursions"]
    )
    excursions = (
        "<table><tr><th>host</th><th>stage</th><th>start</th><th>end</th><th>duration</th>"
        f"<th>peak bound</th><th>stamps</th><th></th></tr>{ex}</table>"
        if ex
        else '<p class="ok">No excursion beyond the tier.</p>'
    )
    i = doc["integrity"]
    return (
        f"<h2>Clocks per host and stage</h2>{table}"
        f"<h2>Excursions beyond the tier</h2>{_period_chart(doc)}{excursions}"
        f"<h2>Clock alerts</h2><p>{_e(doc['alerts']['reason'])}.</p>"
        f"<h2>Integrity</h2><p>{_e(i['scheme'])}.</p><h3>Chain heads when produced</h3>"
        f"{_chains(i)}{_checked(i)}<p>Re-verify: <code>{_e(i['verify_command'])}</code></p>"
    )


def _timeline_table(doc: dict[str, Any]) -> str:
    """Every stamp of every event in time order: the chart as a table."""
    marks = {
        (e["event_id"], st["stage"], st["kind"]): st.get("affected")
        for e in doc["events"]
        for st in e["stamps"]
    }

    def mark(t: dict[str, Any]) -> list[str] | None:
        return marks.get((t["event_id"], t["stage"], t["kind"]))

    rows = "".join(
        f"<tr {_row_class('timeline-row', mark(t))}>"
        f'<td class="mono nw">{_e(format_ns(t["time_ns"]))}{_mark(mark(t))}</td>'
        f'<td class="num">{"+" if t["delta_from_first_ns"] >= 0 else ""}'
        f"{_e(ns_text(t['delta_from_first_ns']))}</td>"
        f"<td>{_e(t['role'])} {_e(t['label'])}</td><td>{_e(t['stage'])}</td>"
        f'<td class="num">± {_e(ns_text(t["bound_ns"]))}</td></tr>'
        for t in doc["timeline"]
    )
    return (
        "<table><tr><th>time (UTC)</th><th>from first</th><th>event</th><th>stamp</th>"
        f"<th>bound</th></tr>{rows}</table>"
    )


def render_html(doc: dict[str, Any]) -> str:
    """The evidence document as a self-contained HTML page."""
    subject = doc["subject"]
    if subject["kind"] == "period":
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>Clock compliance {_a(subject['id'])}</title><style>{_CSS}</style></head>"
            f'<body><h1>Clock compliance <span id="subject">{_e(subject["from"])} – '
            f"{_e(subject['to'])}</span>"
            + (f" on {_e(subject['host'])}" if subject["host"] else "")
            + f"</h1>{_banner(doc)}{_period_contested_banner(doc)}"
            + f"<h2>Clock-accuracy regime</h2>{_regime(doc)}"
            + f"<h2>Provenance</h2>{_provenance(doc)}"
            + _period_body(doc)
            + f"<p>Document schema {_e(doc['schema'])}.</p></body></html>"
        )
    flags = "".join(
        f'<li class="bad">{_e(f["flag"])}: <code>{_e(f["event_id"])}</code>'
        + (
            f" by {_e(ns_text(f['by_ns']))} (± {_e(ns_text(f['bound_ns']))})"
            if "by_ns" in f
            else ""
        )
        + "</li>"
        for f in doc["order_flags"]
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Evidence: {_a(subject['kind'])} {_a(subject['id'])}</title>"
        f"<style>{_CSS}</style></head><body>"
        f'<h1>Timing evidence for {_e(subject["kind"])} <code id="subject">{_e(subject["id"])}'
        "</code></h1>"
        f"{_banner(doc)}{_contested_banner(doc)}{_latency(doc)}"
        f"<h2>Clock-accuracy regime</h2>{_regime(doc)}"
        f"<h2>Provenance</h2>{_provenance(doc)}"
        f"<h2>Lineage timeline</h2>{chart(doc)}{_timeline_table(doc)}"
        + (f"<h2>Order flags</h2><ul>{flags}</ul>" if flags else "")
        + "<h2>Events, stamps and rule verdicts</h2>"
        + "".join(_event_section(e) for e in doc["events"])
        + f"<h2>Integrity proof</h2>{_integrity(doc)}"
        + f"<p>Document schema {_e(doc['schema'])}.</p></body></html>"
    )
