"""Errors raised by the dashboards component, under
stampline's root ``StamplineError`` (the whole tree: stampline/_common/_errors.py).

GrafanaError            a dashboard, a provisioning tree or a query could not be made
└── PushError           a running Grafana refused or could not be reached
"""

from __future__ import annotations

from stampline._common import StamplineError


class GrafanaError(StamplineError):
    """Root of every error the dashboards component raises."""


class PushError(GrafanaError):
    """A running Grafana refused what was pushed, or could not be reached."""
