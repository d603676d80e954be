"""The JSON Schema (draft-07) of ``stampline.evidence/3``, written into every evidence folder.

Fields may be added within a version (objects allow more properties); a field renamed,
removed or changing meaning makes a new version. Version 3 (from 2): a stamp's tier verdict
is judged against the tier declared for its stage (``regime.stages``, ``regime.declared``)
on the divergence part of its bound (``divergence_ns``: a tap's sighting less the broker's
millisecond), and ``observed_granularity_ns`` is the granularity of the clock that produced
the time (``granularity_from``: the stamp's digits, or the broker's millisecond timestamp);
the decision's latency is ``latency``; values a failed verification puts in doubt carry
``affected``; a period's clocks say the time their stamps cover. Version 2 (from 1): the
integrity proof is per hash chain, and each rule verdict carries the rule file's hash
recorded when the verdict was made.
"""

from __future__ import annotations

from typing import Any

from stampline.evidence._evidence import SCHEMA

_NS = {"type": "integer"}
_NS_OR_NULL = {"type": ["integer", "null"]}
_TIME = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$"}
_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


_BOUND_SOURCE = {
    "oneOf": [
        {"type": "null"},
        _obj(
            {"kind": {"enum": ["configured", "chrony", "fallback", "unknown"]}},
            {
                "reason": {"type": "string"},
                "offset_ns": _NS,
                "root_dispersion_ns": _NS,
                "root_delay_ns": _NS,
            },
        ),
    ]
}
_GRANULARITY_FROM = {"enum": ["digits", "broker"]}
# What verification found wrong with the batch or chain a value is read from.
_AFFECTED = {"type": "array", "minItems": 1, "items": {"type": "string"}}
_STAMP = _obj(
    {
        "stage": {"type": "string"},
        "kind": {"enum": ["origin", "broker", "ingest", "stage"]},
        "time": _TIME,
        "time_ns": _NS,
        "host": {"type": "string"},
        "bound_ns": _NS_OR_NULL,
        "bound_source": _BOUND_SOURCE,
        "regime": _obj(
            {"verdict": {"enum": ["meets", "fails", "unproven", "outside"]}},
            {
                "tier": {"type": "string"},
                "max_divergence_ns": _NS,
                "granularity_ns": _NS,
                "divergence_ns": _NS,
                "bound_ok": {"type": "boolean"},
                "observed_granularity_ns": _NS,
                "granularity_from": _GRANULARITY_FROM,
                "granularity_ok": {"type": "boolean"},
            },
        ),
    },
    {"received_ns": _NS, "affected": _AFFECTED},
)
_SHA_OR_NULL = {"oneOf": [{"type": "null"}, _SHA]}
_VERDICT = _obj(
    {
        "rule_id": {"type": "string"},
        "rule_version": _NS,
        "severity": {"enum": ["error", "warn"]},
        "reason": {"type": "string"},
        "rule_file_sha256": _SHA_OR_NULL,
        "rule_file": {
            "oneOf": [
                {"type": "null"},
                _obj(
                    {
                        "path": {"type": "string"},
                        "sha256": _SHA,
                        "version_now": _NS,
                        "same_version": {"type": "boolean"},
                        "same_file": {"type": ["boolean", "null"]},
                    }
                ),
            ]
        },
    }
)
_EVENT = _obj(
    {
        "event_id": {"type": "string"},
        "label": {"type": "string"},
        "role": {"enum": ["decision", "input", "event"]},
        "depth": _NS,
        "provider": {"type": "string"},
        "instrument": {"type": "string"},
        "source": _obj({"topic": {"type": "string"}, "partition": _NS, "offset": _NS}),
        "parents": {"type": "array", "items": {"type": "string"}},
        "born": {"oneOf": [{"type": "null"}, _TIME]},
        "observed": {"type": "boolean"},
        "stamps": {"type": "array", "items": _STAMP},
        "intervals": {
            "type": "array",
            "items": _obj(
                {
                    "span": {"type": "string"},
                    "value_ns": _NS,
                    "bound_ns": _NS_OR_NULL,
                    "flags": {"type": "array", "items": {"type": "string"}},
                }
            ),
        },
        "rules": _obj(
            {"outcome": {"type": "string"}, "verdicts": {"type": "array", "items": _VERDICT}}
        ),
    },
    {"affected": _AFFECTED},
)
_PRODUCED = _obj(
    {
        "software": {"type": "string"},
        "at": _TIME,
        "at_ns": _NS,
        "inputs": {
            "type": "array",
            "items": _obj(
                {"role": {"enum": ["config", "rules"]}, "path": {"type": "string"}, "sha256": _SHA},
                {"rules": {"type": "object", "additionalProperties": _NS}},
            ),
        },
        "config_sha256": {"oneOf": [{"type": "null"}, _SHA]},
    }
)
_REGIME = _obj(
    {
        "id": {"type": "string"},
        "version": {"type": "string"},
        "title": {"type": "string"},
        "tier": {"type": "string"},
        "max_divergence_ns": _NS,
        "granularity_ns": _NS,
        "applies_to": {"type": "string"},
        "declared": {"type": "string"},
        "stages": {"type": "object", "additionalProperties": {"type": "string"}},
    }
)
_KIND = {"enum": ["observations", "dead_letters"]}
_HOLDS = {"type": "array", "items": {"type": "string"}}
_BATCH = _obj(
    {
        "chain_id": {"type": "string"},
        "batch": _NS,
        "kind": _KIND,
        "trail_offset": _NS,
        "rows": _NS,
        "written": _TIME,
        "expires": _TIME,
        "digest": _SHA,
        "prev_chain": _SHA,
        "chain": _SHA,
        "holds": _HOLDS,
        "links_to_head": _NS,
    }
)
_UNLEDGERED = _obj({"chain_id": {"type": "string"}, "batch": _NS, "kind": _KIND, "holds": _HOLDS})
_CONTESTED = _obj(
    {
        "event_id": {"type": "string"},
        "stage": {"type": "string"},
        "chains": {"type": "array", "minItems": 2, "items": {"type": "string"}},
    }
)
_CHAIN = _obj(
    {
        "chain_id": {"type": "string"},
        "head_batch": _NS,
        "head": _SHA,
        "expect_head": {"type": "string"},
    }
)
_VERIFIED = {
    "oneOf": [
        {"type": "null"},
        _obj(
            {
                "ok": {"type": "boolean"},
                "batches": _NS,
                "rows": _NS,
                "dead_letters": _NS,
                "expired_batches": _NS,
                "chain_heads": {"type": "object", "additionalProperties": _SHA},
                "findings": {"type": "array", "items": {"type": "object"}},
            }
        ),
    ]
}
_CHAINS = {"type": "array", "items": _CHAIN}
_LATENCY = {
    "oneOf": [
        {"type": "null"},
        _obj(
            {
                "decided": {
                    "oneOf": [
                        {"type": "null"},
                        _obj(
                            {
                                "stage": {"type": "string"},
                                "time": _TIME,
                                "time_ns": _NS,
                                "bound_ns": _NS_OR_NULL,
                            }
                        ),
                    ]
                },
                "inputs": {
                    "type": "array",
                    "items": _obj(
                        {
                            "event_id": {"type": "string"},
                            "label": {"type": "string"},
                            "received_at": {"type": ["string", "null"]},
                            "received": {"oneOf": [{"type": "null"}, _TIME]},
                            "received_ns": _NS_OR_NULL,
                            "value_ns": _NS_OR_NULL,
                            "bound_ns": _NS_OR_NULL,
                            "flags": {"type": "array", "items": {"type": "string"}},
                            "affected": {"type": "boolean"},
                        }
                    ),
                },
            }
        ),
    ]
}
_LINEAGE = _obj(
    {
        "subject": _obj({"kind": {"enum": ["decision", "event"]}, "id": {"type": "string"}}),
        "latency": _LATENCY,
        "events": {"type": "array", "minItems": 1, "items": _EVENT},
        "order_flags": {
            "type": "array",
            "items": _obj(
                {"event_id": {"type": "string"}, "flag": {"type": "string"}},
                {"by_ns": _NS, "bound_ns": _NS_OR_NULL},
            ),
        },
        "timeline": {"type": "array"},
        "integrity": _obj(
            {
                "scheme": {"type": "string"},
                "chains": _CHAINS,
                "batches": {"type": "array", "items": _BATCH},
                "unledgered": {"type": "array", "items": _UNLEDGERED},
                "verify_command": {"type": "string"},
                "verified_at_production": _VERIFIED,
            },
            {"contested": {"type": "array", "items": _CONTESTED}},
        ),
    }
)
_EXCURSION = _obj(
    {
        "start": _TIME,
        "start_ns": _NS,
        "end": _TIME,
        "end_ns": _NS,
        "duration_ns": _NS,
        "peak_ns": _NS,
        "stamps": _NS,
        "ongoing_at_last_stamp": {"type": "boolean"},
    }
)
_PERIOD = _obj(
    {
        "subject": _obj(
            {
                "kind": {"const": "period"},
                "id": {"type": "string"},
                "from": _TIME,
                "to": _TIME,
                "host": {"type": ["string", "null"]},
            }
        ),
        "clocks": {
            "type": "array",
            "items": _obj(
                {
                    "host": {"type": "string"},
                    "stage": {"type": "string"},
                    "stamps": _NS,
                    "bound_ns": _obj({"min": _NS, "p50": _NS, "p99": _NS, "max": _NS}),
                    "within_tier_stamps_share": {"type": "number", "minimum": 0, "maximum": 1},
                    "within_tier_time_share": {
                        "type": ["number", "null"],
                        "minimum": 0,
                        "maximum": 1,
                    },
                    "tier": {"type": "string"},
                    "first_ns": _NS,
                    "last_ns": _NS,
                    "covered_ns": _NS,
                    "observed_granularity_ns": _NS,
                    "granularity_from": _GRANULARITY_FROM,
                    "granularity_ok": {"type": "boolean"},
                    "sources": {"type": "array"},
                    "excursions": {"type": "array", "items": _EXCURSION},
                }
            ),
        },
        "alerts": _obj({"available": {"type": "boolean"}}),
        "integrity": _obj(
            {
                "scheme": {"type": "string"},
                "chains": _CHAINS,
                "verify_command": {"type": "string"},
                "verified_at_production": _VERIFIED,
            }
        ),
    },
    {
        "contested": {
            "type": "array",
            "items": _obj(
                {
                    "stage": {"type": "string"},
                    "stamps": _NS,
                    "chains": {"type": "array", "minItems": 2, "items": {"type": "string"}},
                    "first": _TIME,
                    "first_ns": _NS,
                    "last": _TIME,
                    "last_ns": _NS,
                }
            ),
        }
    },
)

EVIDENCE_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": SCHEMA,
    "title": "stampline evidence document, version 3 (docs/evidence.md)",
    "allOf": [
        _obj({"schema": {"const": SCHEMA}, "produced": _PRODUCED, "regime": _REGIME}),
        {"oneOf": [_LINEAGE, _PERIOD]},
    ],
}
