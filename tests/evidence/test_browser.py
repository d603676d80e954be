"""A real browser reads the report: headless Chromium renders the HTML and prints the PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from stampline.audit import ChdbStore
from stampline.evidence import (
    Context,
    InputFile,
    decision_evidence,
    dump_dom,
    event_evidence,
    find_chromium,
    parse_period,
    period_evidence,
    print_pdf,
    regime_tier,
    render_html,
    write_bundle,
)
from tests.evidence.conftest import Lineage

pytestmark = pytest.mark.slow

# Appended to a copy of the report for this test only (the report itself has no scripts):
# it writes what the browser laid out into the DOM, which --dump-dom then returns.
_MEASURE = """<script>
const svg = document.getElementById('chart').getBoundingClientRect();
const dots = [...document.querySelectorAll('#chart circle.stamp')].map(c => {
  const r = c.getBoundingClientRect();
  return {event: c.dataset.event, stage: c.dataset.stage, x: r.x, y: r.y, w: r.width, h: r.height};
});
const pre = document.createElement('pre');
pre.id = 'measured';
pre.textContent = JSON.stringify({svg: {x: svg.x, y: svg.y, w: svg.width, h: svg.height}, dots});
document.body.appendChild(pre);
</script></body>"""


def _ctx(lin: Lineage) -> Context:
    reg, tier = regime_tier("rts25/2017/574", "other")
    return Context(
        "stampline test",
        reg,
        tier,
        f"--store {lin.store.path}",
        (InputFile.read("rules", lin.rules, {"qty.max": 2, "price.tick": 1}),),
    )


def _facts(doc: dict[str, Any]) -> list[str]:
    """What a reader must find: the subject, every stamp's time, bound and verdict, the rule
    verdicts and the head of each chain."""
    from stampline.evidence._html import ns_text

    facts = [doc["subject"]["id"], *(c["head"] for c in doc["integrity"]["chains"])]
    for e in doc["events"]:
        facts.append(e["event_id"])
        for s in e["stamps"]:
            facts += [s["time"], ns_text(s["bound_ns"]), s["regime"]["verdict"]]
        facts += [v["rule_id"] for v in e["rules"]["verdicts"]]
    return facts


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_chromium_renders_every_fact_and_the_chart(lineage: Lineage, tmp_path: Path) -> None:
    """The DOM Chromium builds holds the decision id, every stamp, bound and verdict, and the
    chart's SVG is laid out with one visible dot per stamp inside it."""
    assert find_chromium() is not None, "Chromium is required (system-packages.txt)"
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    page = tmp_path / "measure.html"
    page.write_text(render_html(doc).replace("</body>", _MEASURE), "utf-8")
    dom = dump_dom(page)
    text = _squash(re.sub(r"<[^>]+>", " ", dom).replace("&amp;", "&"))
    for fact in _facts(doc):
        assert _squash(fact) in text, fact
    assert "warn" in text
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found is not None, "the measuring script did not run"
    measured = orjson.loads(found[1])
    svg = measured["svg"]
    assert svg["w"] >= 900
    assert svg["h"] >= 100
    stamps = [(e["event_id"], s["stage"]) for e in doc["events"] for s in e["stamps"]]
    assert sorted((d["event"], d["stage"]) for d in measured["dots"]) == sorted(stamps)
    for d in measured["dots"]:
        assert d["w"] > 0
        assert d["h"] > 0
        assert svg["x"] <= d["x"] <= d["x"] + d["w"] <= svg["x"] + svg["w"] + 1
        assert svg["y"] <= d["y"] <= d["y"] + d["h"] <= svg["y"] + svg["h"] + 1
    # Later stamps sit further right: the axis is time.
    dots = {(d["event"], d["stage"]): d["x"] for d in measured["dots"]}
    alpha = {s["stage"]: s["time_ns"] for s in doc["events"][2]["stamps"]}
    assert (alpha["origin"] < alpha["gate"]) == (
        dots[(lineage.alpha, "origin")] < dots[(lineage.alpha, "gate")]
    )


def test_the_printed_pdf_reads_back_with_the_same_facts(lineage: Lineage, tmp_path: Path) -> None:
    """Chromium prints the report; pdftotext finds the decision id, every stamp, bound,
    verdict, the rule verdicts and the chain heads in it."""
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage)).to_dict()
    bundle = write_bundle(tmp_path / "ev", doc)
    assert bundle.pdf_error is None
    pdf = tmp_path / "ev" / "report.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = _squash(_pdf_text(pdf))
    for fact in _facts(doc):
        assert _squash(fact) in text, fact


def test_a_dead_lettered_event_prints_its_rule_and_reason(lineage: Lineage, tmp_path: Path) -> None:
    """The PDF of a dead-lettered event shows the rule, its version, the reason and the
    fallback bound source."""
    doc = event_evidence(lineage.store, lineage.dead, _ctx(lineage)).to_dict()
    html = tmp_path / "dead.html"
    html.write_text(render_html(doc), "utf-8")
    text = _squash(_pdf_text(print_pdf(html, tmp_path / "dead.pdf")))
    for fact in ("qty.max", "v2", "quantity 5000 is above 1000", "fallback: chronyc not found"):
        assert _squash(fact) in text, fact


def _pdf_text(pdf: Path, *, first_page_only: bool = False) -> str:
    binary = shutil.which("pdftotext")
    assert binary is not None, "pdftotext is required (system-packages.txt: poppler-utils)"
    pages = ["-f", "1", "-l", "1"] if first_page_only else []
    return subprocess.run(
        [binary, "-enc", "UTF-8", *pages, str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_period_report_prints_its_excursion(store: ChdbStore, tmp_path: Path) -> None:
    """A clock-compliance PDF shows the host, the excursion's start, end and peak, and its
    chart's excursion bar is laid out inside the chart."""
    from tests.evidence.test_period import PERIOD, _stamps
    from tests.evidence.test_period import _ctx as period_ctx

    bounds = [50_000] * 20
    bounds[5:8] = [4_000_000] * 3
    store.write_observations(_stamps("gw-9", bounds, "configured", 11))
    lo, hi = parse_period(PERIOD)
    doc = period_evidence(store, lo, hi, period_ctx()).to_dict()
    (x,) = doc["clocks"][0]["excursions"]
    bundle = write_bundle(tmp_path / "p", doc)
    assert bundle.pdf_error is None
    text = _squash(_pdf_text(tmp_path / "p" / "report.pdf"))
    for fact in ("gw-9", x["start"], x["end"], "4.000 ms", "30.000 ms"):
        assert _squash(fact) in text, fact


def test_a_tampered_report_reads_as_failed_on_page_one(lineage: Lineage, tmp_path: Path) -> None:
    """On a tampered store, as a person reads it: page 1 of the PDF opens with the failed
    verification, the tier it was judged against and the decision's latency; the values in
    doubt are marked in the PDF and in the page Chromium builds; the JSON meets its schema."""
    import fastjsonschema

    from tests.evidence.test_readable import TAP_BROKER_MS, _tamper, _tap_sighting

    _tap_sighting(lineage.store, lineage.decision, TAP_BROKER_MS)
    _tamper(lineage)
    verified = lineage.store.verify()
    doc = decision_evidence(lineage.store, lineage.decision, _ctx(lineage), verified).to_dict()
    folder = tmp_path / "ev"
    assert write_bundle(folder, doc).pdf_error is None
    validate = fastjsonschema.compile(orjson.loads((folder / "evidence.schema.json").read_bytes()))
    validate(orjson.loads((folder / "evidence.json").read_bytes()))
    page1 = _squash(_pdf_text(folder / "report.pdf", first_page_only=True))
    for fact in (
        "VERIFICATION FAILED",
        "local batch 1: changed",
        "tier other",
        "Decision latency",
        "1.495 ms ± 2.050 ms",
    ):
        assert _squash(fact) in page1, fact
    text = _pdf_text(folder / "report.pdf")
    assert text.count("⚠ local batch 1: changed") >= 6, "each value from the failed batch"
    assert "the broker's timestamp" in text
    dom = dump_dom(folder / "report.html")
    assert 0 < dom.find('id="verification-failed"') < dom.find("<h2>")
    assert len(re.findall(r'<tr class="stamp-row affected">', dom)) == 6
    assert "tap:decisions" in dom
    seen = _squash(re.sub(r"<[^>]+>", " ", dom).replace("&amp;", "&"))
    for fact in ("tier other", "Decision latency", "1.495 ms ± 2.050 ms"):
        assert _squash(fact) in seen, fact
    band = _banner_rows(folder / "report.pdf", tmp_path / "page1")
    assert band, "no band of the banner's colour on page 1"
    assert band[0] < 0.4, f"the banner's band starts {band[0]:.0%} down page 1, not near the top"
    assert len(band) >= 5, "the banner is a band, not a stray line"


# The banner's fill (#fde8e8) and border (#b42318), in evidence/_html.py's style sheet.
_BANNER_FILL = (0xFD, 0xE8, 0xE8)
_BANNER_BORDER = (0xB4, 0x23, 0x18)


def _banner_rows(pdf: Path, stem: Path) -> list[float]:
    """Page 1 rendered by pdftoppm at 40 dpi, as a person sees it: the pixel rows (as a
    fraction of the page's height, top first) where at least half of the page's width is the
    banner's fill or border colour."""
    binary = shutil.which("pdftoppm")
    assert binary is not None, "pdftoppm is required (system-packages.txt: poppler-utils)"
    subprocess.run(
        [binary, "-f", "1", "-l", "1", "-r", "40", "-singlefile", str(pdf), str(stem)],
        check=True,
    )
    data = stem.with_suffix(".ppm").read_bytes()
    header = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", data)
    assert header is not None, "pdftoppm wrote no 8-bit PPM"
    w, h = int(header[1]), int(header[2])
    pixels = data[header.end() :]

    def near(px: bytes, colour: tuple[int, int, int]) -> bool:
        return all(abs(a - b) <= 12 for a, b in zip(px, colour, strict=True))

    rows = []
    for y in range(h):
        line = pixels[y * w * 3 : (y + 1) * w * 3]
        hits = sum(
            near(line[x : x + 3], _BANNER_FILL) or near(line[x : x + 3], _BANNER_BORDER)
            for x in range(0, w * 3, 3)
        )
        if hits >= w // 2:
            rows.append(y / h)
    return rows
