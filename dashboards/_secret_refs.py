"""Secrets in provisioning files are references Grafana resolves, never values.

Grafana expands ``$VAR`` and ``${VAR}`` from its own environment in every provisioning file,
and reads ``$$`` as a literal ``$`` (its provisioning docs, "Use environment variables").
So a written file holds ``$STAMPLINE_ALERTMANAGER_PASSWORD`` where the Alertmanager password
goes — without braces, which Grafana would expand a second time, breaking a password holding
``$`` — and the person who runs Grafana sets that variable. ``grafana push`` (an API call,
which Grafana does not expand) fills the values in just before sending.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from stampline._common import is_secret_param, url_credentials

PASSWORD_ENV = "STAMPLINE_ALERTMANAGER_PASSWORD"
"""The environment variable Grafana reads the Alertmanager basic-auth password from."""

_REF = re.compile(r"\$\$|\$(STAMPLINE_ALERTMANAGER_[A-Z0-9_]+)")


def _literal(text: str) -> str:
    return text.replace("$", "$$")


def alertmanager_settings(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``prometheus-alertmanager`` contact point settings for ``url`` as a provisioning
    file holds them — references in place of its secrets, every other ``$`` doubled — and
    the secrets by variable name.

    User info becomes ``basicAuthUser`` and a ``basicAuthPassword`` reference; the value of
    a token-like query parameter becomes ``$STAMPLINE_ALERTMANAGER_<NAME>``.
    """
    bare, user, password = url_credentials(url)
    secrets: dict[str, str] = {}
    parts = urlsplit(bare)
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if is_secret_param(name):
            env = "STAMPLINE_ALERTMANAGER_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
            secrets[env] = value
            query.append((_literal(name), "$" + env))
        else:
            query.append((_literal(name), _literal(value)))
    written = _literal(parts._replace(query="").geturl())
    if query:
        written += "?" + urlencode(query, safe="$")
    settings = {"url": written}
    if user:
        settings["basicAuthUser"] = _literal(user)
    if password is not None:
        settings["basicAuthPassword"] = "$" + PASSWORD_ENV
        secrets[PASSWORD_ENV] = password
    return settings, secrets


def fill(document: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """``document`` as the API takes it: in each contact point's settings, references
    replaced by their values from ``secrets`` and ``$$`` read back as ``$``."""

    def value(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        return _REF.sub(lambda m: "$" if m.group(1) is None else secrets[m.group(1)], text)

    points = document.get("contactPoints")
    if not points:
        return document
    filled = [
        {
            **cp,
            "receivers": [
                {**r, "settings": {k: value(v) for k, v in r.get("settings", {}).items()}}
                for r in cp.get("receivers", [])
            ],
        }
        for cp in points
    ]
    return {**document, "contactPoints": filled}
