"""The root of stampline's exceptions: every error stampline raises on purpose is one.

Each component hangs its own tree under it, in its ``exceptions.py``; the shell's errors
hang directly under it. A caller catches ``StamplineError`` for anything stampline refused,
and lets a real bug through::

    StamplineError
    ├── YamlFileError         a YAML file cannot be read or parsed (components re-raise it)
    ├── YamlLimitError        a YAML text goes past a limit (also a yaml.YAMLError)
    ├── RulesError            stampline.rules
    │   ├── RuleFileError     a rule file or contract is unreadable or invalid
    │   └── GxMissingError    Great Expectations needed and not installed
    ├── AuditError            stampline.audit
    │   ├── StoreError        the store could not be opened, written or queried
    │   │   └── ReadOnlyError the live endpoint refused a statement that is not a read
    │   ├── NotFoundError     the trail holds no such event or decision
    │   └── TrailFormatError  a trail message of unknown version or kind, or inconsistent
    ├── CollectorError        stampline.collectors
    │   ├── StampError        stamp headers present but unreadable
    │   ├── DeliveryError     the broker did not accept a produced record
    │   └── BrokerCheckError  the broker cannot give what the configuration asks
    ├── AlertingError         stampline.alerting
    │   ├── DefinitionError   an alert definitions file is unreadable or invalid
    │   └── AlertDeliveryError Alertmanager refused a request a person waits on
    ├── GrafanaError          stampline.dashboards
    │   └── PushError         a running Grafana refused or could not be reached
    ├── EvidenceError         stampline.evidence
    │   └── BrowserError      Chromium is missing or printed nothing
    ├── ConfigError           stampline.config: the configuration cannot be used
    ├── BrokerError           stampline.broker: the embedded broker could not start or serve
    └── DemoError             stampline.demo: the demo could not run to the end

``tests/test_public_api.py`` checks that every exception a component exports is under it.
"""

from __future__ import annotations


class StamplineError(Exception):
    """Something stampline refused or could not do, with a message saying what."""
