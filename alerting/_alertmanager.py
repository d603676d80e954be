"""A small client for Alertmanager's v2 API (``/api/v2/alerts``, ``/api/v2/silences``),
on the standard library's HTTP client: no extra dependency for three calls."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from stampline._common import mask_urls, url_credentials
from stampline.alerting._notice import Notice, iso
from stampline.alerting.exceptions import AlertDeliveryError


class AlertmanagerClient:
    """Talks to one Alertmanager at ``url`` (``http://host:9093``).

    Basic auth comes from ``username``/``password`` or from the URL's user info
    (``http://user:PW@host:9093``); either way the credentials travel in an ``Authorization``
    header, and every message shows the URL masked (:func:`~stampline._common.mask_urls`).
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 2.0,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        bare, url_user, url_password = url_credentials(url.rstrip("/"))
        self.url = bare
        self.shown = mask_urls(bare)  # the URL as messages show it
        self.timeout_s = timeout_s
        user = username if username is not None else url_user
        secret = password if password is not None else url_password
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if user is not None or secret is not None:
            token = base64.b64encode(f"{user or ''}:{secret or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=self._headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = mask_urls(exc.read()[:300].decode("utf-8", "replace"))
            raise AlertDeliveryError(
                f"Alertmanager {method} {mask_urls(path)}: HTTP {exc.code}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # ValueError: a URL urllib cannot use (a port that is not a number)
            reason = mask_urls(str(getattr(exc, "reason", exc)))
            raise AlertDeliveryError(
                f"Alertmanager at {self.shown} unreachable: {reason}"
            ) from None
        return orjson.loads(raw) if raw.strip() else None

    def post_alerts(self, alerts: Sequence[Mapping[str, object]]) -> None:
        """``POST /api/v2/alerts``.

        Raises:
            AlertDeliveryError: refused or unreachable.
        """
        if alerts:
            self._call("POST", "/api/v2/alerts", list(alerts))

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (``GET /api/v2/alerts``)."""
        query = "" if active_only else "?active=true&silenced=true&inhibited=true&unprocessed=true"
        got = self._call("GET", "/api/v2/alerts" + query)
        return list(got or [])

    def create_silence(
        self,
        matchers: Mapping[str, str],
        starts_ns: int,
        ends_ns: int,
        created_by: str,
        comment: str,
    ) -> str:
        """A silence of every alert whose labels equal ``matchers``; returns its id.

        Raises:
            AlertDeliveryError: refused or unreachable.
        """
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in sorted(matchers.items())
            ],
            "startsAt": iso(starts_ns),
            "endsAt": iso(ends_ns),
            "createdBy": created_by,
            "comment": comment,
        }
        got = self._call("POST", "/api/v2/silences", body)
        return str(got["silenceID"])

    def delete_silence(self, silence_id: str) -> None:
        """Expire a silence.

        Raises:
            AlertDeliveryError: refused (unknown id) or unreachable.
        """
        self._call("DELETE", f"/api/v2/silence/{silence_id}")

    def silences(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/api/v2/silences") or [])


def am_alert(
    notice: Notice, now_ns: int, resend_ns: int, generator_url: str = ""
) -> dict[str, object]:
    """The v2 API form of a notice. Firing: ``endsAt`` a few re-send intervals ahead, so an
    alert Alertmanager stops hearing about resolves by itself (as Prometheus does); resolved:
    ``endsAt`` is the resolve time."""
    t = notice.transition
    body: dict[str, object] = {
        "labels": notice.labels,
        "annotations": notice.annotations,
        "startsAt": iso(t.started_ns),
    }
    if t.state == "resolved":
        body["endsAt"] = iso(max(t.at_ns, t.started_ns))
    else:
        body["endsAt"] = iso(max(now_ns, t.at_ns) + 4 * resend_ns)
    if generator_url:
        body["generatorURL"] = generator_url
    return body
