"""The provider label of a record too broken to name its provider (not JSON, oversized).

An empty label value is no label at all to Prometheus and Alertmanager: an alert about such
records would arrive with no provider. They are counted under this name instead.
"""

UNNAMED_PROVIDER = "(unnamed)"
