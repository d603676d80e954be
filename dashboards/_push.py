"""``stampline grafana push``: provision a running Grafana through its HTTP API (grafana-client).

Idempotent: each object (the folders, the data sources, the alerting objects, the
dashboards) is read first and written only when it differs from what the code renders, so a
second push changes nothing.
A dry run reads and reports what it would change, writing nothing. Targets Grafana 11-13
(``/api/health`` tells the version; older ones are refused).

The ClickHouse password is sent only when the data source is created or when
``ENV_CLICKHOUSE_PASSWORD`` is set: Grafana never returns a secret, so an existing one
cannot be compared and is left alone otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)

from stampline._common import mask_urls
from stampline.dashboards._common import FOLDER_TITLE, FOLDER_UID
from stampline.dashboards._provisioning import (
    ALERTS_FOLDER_TITLE,
    ALERTS_FOLDER_UID,
    ENV_CLICKHOUSE_PASSWORD,
    AlertingSection,
    GrafanaSettings,
    dashboards,
    datasources,
)
from stampline.dashboards._push_alerting import push_alerting
from stampline.dashboards._secret_refs import fill
from stampline.dashboards.exceptions import PushError

MIN_MAJOR, MAX_MAJOR = 11, 13
_DASHBOARD_META = ("id", "version")  # set by Grafana, not by us

Action = Literal["create", "update", "unchanged"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal[
        "folder",
        "datasource",
        "dashboard",
        "contact_point",
        "mute_timing",
        "policies",
        "rule_group",
    ]
    uid: str  # the object's uid (a mute timing's or rule group's name)
    action: Action

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "uid": self.uid, "action": self.action}


@dataclass(slots=True)
class PushReport:
    """What a push changed (or, in a dry run, would change)."""

    grafana_version: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return sum(c.action != "unchanged" for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "grafana_version": self.grafana_version,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "changes": [c.to_dict() for c in self.changes],
        }


def push(
    url: str,
    token: str,
    settings: GrafanaSettings | None = None,
    *,
    dry_run: bool = False,
    timeout_s: float = 10.0,
    alerting: Sequence[AlertingSection] = (),
) -> PushReport:
    """Provision the folder, data sources, alerting sections and dashboards at ``url``.

    ``alerting`` takes the same sections ``export`` writes to ``alerting/`` (Grafana's
    file-provisioning format); each part goes through the alerting provisioning API.

    Raises:
        PushError: Grafana cannot be reached, is not Grafana 11-13, refuses the token, or
            refuses a payload (the message names the object and Grafana's reason).
    """
    settings = settings or GrafanaSettings()
    if not url.startswith(("http://", "https://")):
        raise PushError(f"--url {mask_urls(url)!r} must start with http:// or https://")
    if not token:
        raise PushError("no API token: set a service-account token (see --token-env)")
    api = GrafanaApi.from_url(url.rstrip("/"), credential=token, timeout=timeout_s)
    # A 404 here means the URL is some other server (or Grafana under another path).
    version = _call(
        url, "read the health endpoint", lambda: api.client.GET("/health"), missing_ok=True
    )
    grafana_version = str(version.get("version", "")) if isinstance(version, dict) else ""
    major = grafana_version.split(".")[0]
    if not major.isdigit():
        raise PushError(f"{mask_urls(url)} does not answer /api/health like Grafana does")
    if not MIN_MAJOR <= int(major) <= MAX_MAJOR:
        raise PushError(
            f"{mask_urls(url)} runs Grafana {grafana_version}; "
            f"the dashboards target {MIN_MAJOR}-{MAX_MAJOR}"
        )
    report = PushReport(grafana_version, dry_run)
    # The API does not expand the references a written file holds: send the values.
    documents = [(s.name, fill(s.document(settings), getattr(s, "secrets", {}))) for s in alerting]
    report.changes.append(_folder(api, url, FOLDER_UID, FOLDER_TITLE, dry_run))
    if any(doc.get("groups") for _, doc in documents):
        report.changes.append(_folder(api, url, ALERTS_FOLDER_UID, ALERTS_FOLDER_TITLE, dry_run))
    password = os.environ.get(ENV_CLICKHOUSE_PASSWORD)
    for ds in datasources(settings):
        report.changes.append(_datasource(api, url, ds, password, dry_run))
    call = partial(_call, url)
    for name, document in documents:
        for kind, uid, action in push_alerting(api, document, name, call, dry_run, int(major)):
            report.changes.append(Change(kind, uid, action))  # type: ignore[arg-type]
    for uid, dash in dashboards(settings).items():
        report.changes.append(_dashboard(api, url, uid, dash, dry_run))
    return report


def _call(url: str, what: str, fn: Callable[[], Any], *, missing_ok: bool = False) -> Any:
    """Run one API call, turning every failure into a PushError that says what and why.

    With ``missing_ok`` a 404 returns None (the object does not exist yet).
    """
    try:
        return fn()
    except GrafanaUnauthorizedError as exc:
        raise PushError(
            f"Grafana at {mask_urls(url)} refused the token (401) when trying to {what}: "
            "is it a valid service-account token?"
        ) from exc
    except GrafanaClientError as exc:
        if exc.status_code == 404 and missing_ok:
            return None
        if exc.status_code == 403:
            raise PushError(
                f"Grafana at {mask_urls(url)} allowed the token but not to {what} (403): "
                "the service account needs the Editor or Admin role"
            ) from exc
        raise PushError(f"Grafana at {mask_urls(url)} refused to {what}: {exc.message}") from exc
    except GrafanaException as exc:
        raise PushError(f"Grafana at {mask_urls(url)} failed to {what}: {exc.message}") from exc
    except (niquests.exceptions.RequestException, OSError, ValueError) as exc:
        raise PushError(f"cannot reach Grafana at {mask_urls(url)} to {what}: {exc}") from exc


def _get(url: str, what: str, fn: Callable[[], Any]) -> Any | None:
    """Read an object; None when Grafana says it does not exist."""
    return _call(url, what, fn, missing_ok=True)


def _folder(api: GrafanaApi, url: str, uid: str, title: str, dry_run: bool) -> Change:
    have = _get(url, f"read folder {uid}", lambda: api.folder.get_folder(uid))
    if have is not None and have.get("title") == title:
        return Change("folder", uid, "unchanged")
    action: Action = "create" if have is None else "update"
    if not dry_run:
        if have is None:
            _call(
                url,
                f"create folder {uid}",
                lambda: api.folder.create_folder(title, uid=uid),
            )
        else:
            _call(
                url,
                f"rename folder {uid}",
                lambda: api.folder.update_folder(uid, title=title, overwrite=True),
            )
    return Change("folder", uid, action)


def _datasource(
    api: GrafanaApi, url: str, want: dict[str, Any], password: str | None, dry_run: bool
) -> Change:
    uid = want["uid"]
    body = {k: v for k, v in want.items() if k not in ("editable", "secureJsonData")}
    secure = want.get("secureJsonData")
    have = _get(url, f"read data source {uid}", lambda: api.datasource.get_datasource_by_uid(uid))
    same = have is not None and all(have.get(k) == v for k, v in body.items())
    if same and not (secure and password):
        return Change("datasource", uid, "unchanged")
    if secure:
        # The provisioning file names the variable; over the API the value itself is sent.
        body["secureJsonData"] = {"password": password or ""}
    action: Action = "create" if have is None else "update"
    if not dry_run:
        if have is None:
            _call(
                url,
                f"create data source {uid}",
                lambda: api.datasource.create_datasource(body),
            )
        else:
            _call(
                url,
                f"update data source {uid}",
                lambda: api.datasource.update_datasource_by_uid(uid, body),
            )
    return Change("datasource", uid, action)


def _dashboard(api: GrafanaApi, url: str, uid: str, want: dict[str, Any], dry_run: bool) -> Change:
    have = _get(url, f"read dashboard {uid}", lambda: api.dashboard.get_dashboard(uid))
    if have is not None:
        stored = {k: v for k, v in have.get("dashboard", {}).items() if k not in _DASHBOARD_META}
        if stored == want and have.get("meta", {}).get("folderUid") == FOLDER_UID:
            return Change("dashboard", uid, "unchanged")
    action: Action = "create" if have is None else "update"
    if not dry_run:
        payload = {
            "dashboard": {**want, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "stampline grafana push",
        }
        _call(
            url,
            f"save dashboard {uid}",
            lambda: api.dashboard.update_dashboard(payload),
        )
    return Change("dashboard", uid, action)
