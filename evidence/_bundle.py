"""An evidence folder: report.html, report.pdf, evidence.json (and its JSON Schema) and the
manifest.

The manifest (manifest.json, and SHA256SUMS for ``sha256sum -c``) holds the SHA-256 of every
file written and of every input the report was built from (configuration, rule files).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stampline._common import visible
from stampline.evidence._browser import print_pdf
from stampline.evidence._html import render_html
from stampline.evidence._schema import EVIDENCE_JSON_SCHEMA
from stampline.evidence.exceptions import BrowserError, EvidenceError

MANIFEST_SCHEMA = "stampline.evidence-manifest/1"
JSON_NAME, HTML_NAME, PDF_NAME = "evidence.json", "report.html", "report.pdf"
MANIFEST_NAME, SUMS_NAME = "manifest.json", "SHA256SUMS"
SCHEMA_NAME = "evidence.schema.json"  # the JSON Schema of evidence.json, for whoever reads it


@dataclass(frozen=True, slots=True)
class Bundle:
    """What was written, and why the PDF is missing when it is."""

    folder: Path
    files: dict[str, str]  # name -> SHA-256
    pdf_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "files": self.files,
            "pdf": self.pdf_error is None,
            "pdf_error": self.pdf_error,
        }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refuse_another_pack(folder: Path, subject: dict[str, Any]) -> None:
    """A folder already holding another subject's evidence is never overwritten: that pack
    may have been handed over, and its files are what its hashes were given for."""
    manifest = folder / MANIFEST_NAME
    if not manifest.exists():
        return
    try:
        theirs = orjson.loads(manifest.read_bytes())["subject"]
        kind, sid = str(theirs["kind"]), str(theirs["id"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        raise EvidenceError(
            f"{folder} holds a {MANIFEST_NAME} that is not an evidence pack's: it is not "
            "overwritten; choose another --out"
        ) from None
    if (kind, sid) != (subject["kind"], subject["id"]):
        raise EvidenceError(
            f"{folder} holds the evidence for {visible(kind)} {visible(sid)}: it is not "
            "overwritten; choose another --out, or move that folder away first"
        )


def write_bundle(folder: Path, document: dict[str, Any], *, pdf: bool = True) -> Bundle:
    """Write the report's files into ``folder`` (created) and the manifest over them. A
    folder holding this subject's evidence is written again; another subject's is refused.

    The PDF is skipped, with the reason in ``pdf_error``, when Chromium is missing or fails:
    the HTML and JSON are the evidence, the PDF a printout of the HTML.

    Raises:
        EvidenceError: ``folder`` holds another subject's evidence (nothing is written).
    """
    _refuse_another_pack(folder, document["subject"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JSON_NAME).write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    (folder / SCHEMA_NAME).write_bytes(
        orjson.dumps(EVIDENCE_JSON_SCHEMA, option=orjson.OPT_INDENT_2) + b"\n"
    )
    (folder / HTML_NAME).write_text(render_html(document), encoding="utf-8")
    pdf_error: str | None = "not asked for (--no-pdf)"
    (folder / PDF_NAME).unlink(missing_ok=True)
    if pdf:
        try:
            print_pdf(folder / HTML_NAME, folder / PDF_NAME)
            pdf_error = None
        except BrowserError as exc:
            pdf_error = str(exc)
    names = [JSON_NAME, SCHEMA_NAME, HTML_NAME] + ([PDF_NAME] if pdf_error is None else [])
    files = {n: _sha(folder / n) for n in names}
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "subject": document["subject"],
        "produced": document["produced"]["at"],
        "software": document["produced"]["software"],
        "files": files,
        "inputs": document["produced"]["inputs"],
        "pdf_missing_because": pdf_error,
    }
    (folder / MANIFEST_NAME).write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    files[MANIFEST_NAME] = _sha(folder / MANIFEST_NAME)
    (folder / SUMS_NAME).write_text("".join(f"{h}  {n}\n" for n, h in files.items()))
    return Bundle(folder, files, pdf_error)
