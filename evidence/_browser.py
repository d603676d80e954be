"""Headless Chromium: print a page to PDF, or read back the DOM it rendered.

Started fresh for each call (its own throw-away profile), with everything that would reach
the network switched off: the report is a local file and needs nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from stampline.evidence.exceptions import BrowserError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "install Chromium (Debian: apt-get install chromium) and run the same command again, "
    "or open report.html in a browser and print it to PDF"
)
_TIMEOUT_S = 120


def find_chromium() -> str | None:
    """The path of a Chromium-family browser, or None; $STAMPLINE_CHROMIUM wins."""
    forced = os.environ.get("STAMPLINE_CHROMIUM")
    if forced:
        return forced if Path(forced).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(binary: str, args: list[str]) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(prefix="stampline-chromium-") as profile:
        flags = [
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to start as root with its sandbox
        try:
            return subprocess.run(
                [binary, *flags, *args], capture_output=True, timeout=_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrowserError(f"{binary} did not run: {exc}") from None


def print_pdf(html: Path, pdf: Path, binary: str | None = None) -> Path:
    """Print ``html`` to ``pdf`` with headless Chromium.

    Raises:
        BrowserError: no Chromium, or it wrote no PDF (its stderr's last line says why).
    """
    chrome = binary or find_chromium()
    if chrome is None:
        raise BrowserError(f"no Chromium found to print the PDF: {INSTALL_HINT}")
    pdf.unlink(missing_ok=True)
    done = _run(
        chrome,
        ["--no-pdf-header-footer", f"--print-to-pdf={pdf.resolve()}", html.resolve().as_uri()],
    )
    if not pdf.exists() or pdf.stat().st_size == 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise BrowserError(f"Chromium wrote no PDF (exit {done.returncode}): {tail[0]}")
    return pdf


def dump_dom(html: Path, binary: str | None = None) -> str:
    """The DOM Chromium built from ``html``, after layout and any scripts, serialised.

    Raises:
        BrowserError: no Chromium, or it printed nothing.
    """
    chrome = binary or find_chromium()
    if chrome is None:
        raise BrowserError(f"no Chromium found: {INSTALL_HINT}")
    done = _run(chrome, ["--dump-dom", html.resolve().as_uri()])
    if not done.stdout.strip():
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise BrowserError(f"Chromium printed no DOM (exit {done.returncode}): {tail[0]}")
    return done.stdout.decode()
