"""Clock-error bounds from chrony, with the configured value as the fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit import clock_error_bound, parse_chronyc_tracking

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
    assert clock_error_bound("chrony", 5_000, chronyc=str(script)) == (312_000, "chrony")


def test_a_failing_chronyc_falls_back_to_the_configured_bound(tmp_path: Path) -> None:
    """A chronyc that fails leaves the configured bound in force, and says why."""
    script = tmp_path / "chronyc"
    script.write_text("#!/bin/sh\necho '506 Cannot talk to daemon' >&2\nexit 1\n")
    script.chmod(0o755)
    bound, source = clock_error_bound("chrony", 5_000, chronyc=str(script))
    assert bound == 5_000
    assert source.startswith("configured (chrony unusable")
