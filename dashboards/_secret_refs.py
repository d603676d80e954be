"""Secrets in provisioning files are references Grafana resolves, never values.

Grafana expands ``$VAR`` / ``${VAR}`` from its own environment in every provisioning file
(its provisioning docs, "Use environment variables"). So a written file holds
``${STAMPLINE_ALERTMANAGER_PASSWORD}`` where the Alertmanager password goes, and the person
who runs Grafana sets that variable; ``grafana push`` (an API call, which Grafana does not
expand) fills the values in just before sending.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from stampline._common import is_secret_param, url_credentials

PASSWORD_ENV = "STAMPLINE_ALERTMANAGER_PASSWORD"
"""The environment variable Grafana reads the Alertmanager basic-auth password from."""

_REF = re.compile(r"\$\{(STAMPLINE_ALERTMANAGER_[A-Z0-9_]+)\}")


def alertmanager_settings(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``prometheus-alertmanager`` contact point settings for ``url``, with references
    in place of its secrets, and the secrets by variable name.

    User info becomes ``basicAuthUser`` and a ``basicAuthPassword`` reference; the value of
    a token-like query parameter becomes ``${STAMPLINE_ALERTMANAGER_<NAME>}``.
    """
    bare, user, password = url_credentials(url)
    secrets: dict[str, str] = {}
    parts = urlsplit(bare)
    if parts.query:
        query = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if is_secret_param(name):
                env = "STAMPLINE_ALERTMANAGER_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
                secrets[env] = value
                value = "${" + env + "}"
            query.append((name, value))
        bare = parts._replace(query=urlencode(query, safe="${}")).geturl()
    settings = {"url": bare}
    if user:
        settings["basicAuthUser"] = user
    if password is not None:
        settings["basicAuthPassword"] = "${" + PASSWORD_ENV + "}"
        secrets[PASSWORD_ENV] = password
    return settings, secrets


def fill(document: Any, secrets: dict[str, str]) -> Any:
    """``document`` with every ``${STAMPLINE_ALERTMANAGER_...}`` reference replaced by its
    value from ``secrets`` (for the API, which does not expand references)."""
    if isinstance(document, str):
        return _REF.sub(lambda m: secrets.get(m.group(1), m.group(0)), document)
    if isinstance(document, dict):
        return {k: fill(v, secrets) for k, v in document.items()}
    if isinstance(document, list):
        return [fill(v, secrets) for v in document]
    return document
