"""Grafana dashboards and alert rules as code, provisioning, the evidence report
(issue-tracked; nothing exported yet).

May import ``alerting``.
"""

__all__: list[str] = []
