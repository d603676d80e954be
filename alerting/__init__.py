"""Detectors, alert lifecycle, notifiers and Prometheus rules (issue-tracked; nothing exported yet).

May import ``audit``.
"""

__all__: list[str] = []
