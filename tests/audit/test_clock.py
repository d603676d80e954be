"""Clock-error bounds from chrony, with the configured value as the fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from stampline.audit import ClockBound, clock_error_bound, parse_chronyc_tracking, read_clock_bound

TRACKING = """Reference ID    : C0A80001 (ntp.example)
Stratum         : 3
System time     : 0.000012000 seconds slow of NTP time
Root delay      : 0.000400000 seconds
Root dispersion : 0.000100000 seconds
Leap status     : Normal
"""


def test_bound_is_offset_plus_dispersion_plus_half_the_delay() -> None:
    """chrony's maximum error: |offset| + root dispersion + root delay / 2."""
    assert parse_chronyc_tracking(TRACKING) == 12_000 + 100_000 + 200_000


def test_an_unsynchronised_clock_has_no_usable_bound() -> None:
    """chrony saying the clock is not synchronised is an error, not a bound."""
    with pytest.raises(ValueError, match="not synchronised"):
        parse_chronyc_tracking(TRACKING.replace("Normal", "Not synchronised"))


def test_missing_fields_are_named() -> None:
    """Output without the root dispersion line names what is missing."""
    text = "\n".join(line for line in TRACKING.splitlines() if "dispersion" not in line)
    with pytest.raises(ValueError, match="Root dispersion"):
        parse_chronyc_tracking(text)


def test_configured_source_never_asks_chrony() -> None:
    """With source "configured" the configured bound is used as it is."""
    assert clock_error_bound("configured", 5_000, chronyc="/nonexistent") == (5_000, "configured")


def test_chronyc_output_is_used_when_the_binary_runs(tmp_path: Path) -> None:
    """A chronyc on the path that answers gives the bound chrony computes."""
    script = tmp_path / "chronyc"
    script.write_text(f"#!/bin/sh\ncat <<'X'\n{TRACKING}X\n")
    script.chmod(0o755)
    assert clock_error_bound("chrony", 5_000, chronyc=str(script)) == (
        312_000,
        "chrony offset_ns=-12000 root_dispersion_ns=100000 root_delay_ns=400000",
    )


def test_a_failing_chronyc_falls_back_to_the_configured_bound(tmp_path: Path) -> None:
    """A chronyc that fails leaves the configured bound in force, and says why."""
    script = tmp_path / "chronyc"
    script.write_text("#!/bin/sh\necho '506 Cannot talk to daemon' >&2\nexit 1\n")
    script.chmod(0o755)
    bound, source = clock_error_bound("chrony", 5_000, chronyc=str(script))
    assert bound == 5_000
    assert source.startswith("fallback: chrony unusable")


def test_a_missing_chronyc_is_a_fallback_naming_the_reason() -> None:
    """Asking for chrony where chronyc is absent records a fallback that says so."""
    b = read_clock_bound("chrony", 7_000, chronyc="/nonexistent/chronyc")
    assert (b.bound_ns, b.kind) == (7_000, "fallback")
    assert "chrony unusable" in b.reason or "not found" in b.reason


@pytest.mark.parametrize(
    "bound",
    [
        ClockBound(1_000, "configured"),
        ClockBound(2_000, "fallback", reason="chronyc not found"),
        ClockBound(312_000, "chrony", "", -12_000, 100_000, 400_000),
    ],
)
def test_a_bound_label_reads_back_as_the_same_bound(bound: ClockBound) -> None:
    """label() and from_label() round-trip every kind the trail records."""
    assert ClockBound.from_label(bound.label(), bound.bound_ns) == bound


def test_an_empty_label_reads_back_as_unknown() -> None:
    """A row that did not say where its bound came from is 'unknown', never 'configured'."""
    assert ClockBound.from_label("", 5).kind == "unknown"
