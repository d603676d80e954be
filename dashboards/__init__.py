"""Grafana dashboards and alert rules as code, provisioning, and the evidence report.

The evidence report: ``decision_evidence`` / ``event_evidence`` / ``period_evidence`` build
the facts from the audit trail as a versioned JSON document (``SCHEMA``); ``write_bundle``
writes it as a folder (HTML, PDF printed by headless Chromium, JSON, manifest).

May import ``audit`` and ``alerting``.
"""

from dashboards._browser import BrowserError, dump_dom, find_chromium, print_pdf
from dashboards._bundle import MANIFEST_SCHEMA, Bundle, write_bundle
from dashboards._chain import ChainProof, read_chain_head, read_chain_proof
from dashboards._evidence import (
    SCHEMA,
    Context,
    Evidence,
    InputFile,
    decision_evidence,
    event_evidence,
)
from dashboards._html import render_html
from dashboards._period import parse_period, period_evidence
from dashboards._regime import REGIMES, Regime, Tier, observed_granularity_ns, regime_tier
from dashboards._schema import EVIDENCE_JSON_SCHEMA

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
    "read_chain_head",
    "read_chain_proof",
    "regime_tier",
    "render_html",
    "write_bundle",
]
