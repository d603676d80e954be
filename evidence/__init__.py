"""The evidence report for regulators: the facts of one decision, event or period, and the
integrity proof they carry.

``decision_evidence`` / ``event_evidence`` / ``period_evidence`` build the facts from the
audit trail as a versioned JSON document (``SCHEMA``); ``write_bundle`` writes it as a folder
(HTML, PDF printed by headless Chromium, JSON, manifest).

May import ``audit`` and ``alerting``.
"""

from stampline._common import imported_as_part_of_stampline
from stampline.evidence._browser import dump_dom, find_chromium, print_pdf
from stampline.evidence._bundle import MANIFEST_SCHEMA, Bundle, write_bundle
from stampline.evidence._chain import (
    ChainProof,
    read_chain_heads,
    read_chain_proof,
    verify_command,
)
from stampline.evidence._evidence import (
    SCHEMA,
    Context,
    Evidence,
    InputFile,
    decision_evidence,
    event_evidence,
)
from stampline.evidence._html import render_html
from stampline.evidence._period import parse_period, period_evidence
from stampline.evidence._regime import REGIMES, Regime, Tier, observed_granularity_ns, regime_tier
from stampline.evidence._schema import EVIDENCE_JSON_SCHEMA
from stampline.evidence.exceptions import BrowserError, EvidenceError

__all__ = [
    "EVIDENCE_JSON_SCHEMA",
    "MANIFEST_SCHEMA",
    "REGIMES",
    "SCHEMA",
    "BrowserError",
    "Bundle",
    "ChainProof",
    "Context",
    "Evidence",
    "EvidenceError",
    "InputFile",
    "Regime",
    "Tier",
    "decision_evidence",
    "dump_dom",
    "event_evidence",
    "find_chromium",
    "observed_granularity_ns",
    "parse_period",
    "period_evidence",
    "print_pdf",
    "read_chain_heads",
    "read_chain_proof",
    "regime_tier",
    "render_html",
    "verify_command",
    "write_bundle",
]

# Never as a top-level `evidence` (from the repository root): see stampline/_common/_namespace.py.
imported_as_part_of_stampline(__name__)
