"""A recording stand-in for Grafana's HTTP API (Grafana cannot run on this machine).

It answers only the endpoints ``stampline grafana push`` uses and enforces what a real
Grafana 11-13 requires of them: the paths and methods, ``Authorization: Bearer <token>`` on
everything but ``/api/health``, JSON bodies, required fields (folder title, data source
name/type/access, dashboard title), uid rules (at most 40 characters of ``[A-Za-z0-9_-]``),
data source names unique (409), a dashboard saved without ``overwrite`` over a newer version
refused (412), and dashboards that the foundation SDK's own model reads back unchanged.
For alerting (``/api/v1/provisioning/...``) it checks what Grafana's validation does: rule
uids, unique titles per folder, durations, refIds and the condition, data sources that exist,
server-side expressions Grafana 11 can run (threshold types gt/lt/within_range/outside_range,
one condition, a reference to another query), ``noDataState``/``execErrState``, the
dashboard/panel annotations as a pair, receivers and time intervals a policy names, mute
timings' fields, contact point types and their required settings. A Grafana 11 drops
``keep_firing_for`` (it only came with 12), as the real one does. Every request is
recorded, so a test can say exactly what was sent.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import zoneinfo
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as sdk_dashboard

_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass
class Request:
    method: str
    path: str
    auth: str | None
    body: Any


@dataclass
class GrafanaState:
    token: str
    version: str = "12.3.1"
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    contact_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    mute_timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, Any] = field(
        default_factory=lambda: {
            "receiver": "grafana-default-email",
            "group_by": ["grafana_folder", "alertname"],
        }
    )
    rule_groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # payloads a real Grafana would refuse

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]


def sdk_round_trip(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard as the foundation SDK's model reads and writes it back."""
    model = sdk_dashboard.Dashboard.from_json(copy.deepcopy(dashboard))
    return json.loads(json.dumps(model, cls=JSONEncoder))  # type: ignore[no-any-return]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                st.problems.append(f"{method} {self.path}: body without a JSON content type")
            body = json.loads(raw)
        auth = self.headers.get("Authorization")
        st.requests.append(Request(method, self.path, auth, body))
        if self.path == "/api/health" and method == "GET":
            return self._reply(200, {"database": "ok", "version": st.version, "commit": "x"})
        if auth != f"Bearer {st.token}":
            return self._reply(401, {"message": "Unauthorized", "messageId": "auth.unauthorized"})
        status, reply = self._route(method, self.path, body)
        self._reply(status, reply)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        st = self.server.state
        if m := re.fullmatch(r"/api/folders/([^/]+)", path):
            uid = m.group(1)
            if method == "GET":
                f = st.folders.get(uid)
                return (200, f) if f else (404, {"message": "folder not found"})
            if method == "PUT":
                if uid not in st.folders:
                    return 404, {"message": "folder not found"}
                if not body.get("title"):
                    return 400, {"message": "folder title cannot be empty"}
                st.folders[uid] |= {"title": body["title"]}
                st.folders[uid]["version"] += 1
                return 200, st.folders[uid]
        if path == "/api/folders" and method == "POST":
            uid = body.get("uid", "")
            if not body.get("title"):
                return 400, {"message": "folder title cannot be empty"}
            if not _UID.match(uid):
                return 400, {"message": "uid contains illegal characters or is too long"}
            if uid in st.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            st.folders[uid] = {"uid": uid, "title": body["title"], "version": 1}
            return 200, st.folders[uid]
        if m := re.fullmatch(r"/api/datasources/uid/([^/]+)", path):
            uid = m.group(1)
            if method == "GET":
                ds = st.datasources.get(uid)
                if ds is None:
                    return 404, {"message": "Data source not found"}
                shown = {k: v for k, v in ds.items() if k != "secureJsonData"}
                shown["secureJsonFields"] = dict.fromkeys(ds.get("secureJsonData", {}), True)
                return 200, shown
            if method == "PUT":
                if uid not in st.datasources:
                    return 404, {"message": "Data source not found"}
                if problem := _datasource_problem(body, st, uid):
                    return 400, {"message": problem}
                kept = st.datasources[uid].get("secureJsonData", {})
                st.datasources[uid] = {"id": st.datasources[uid]["id"], **body}
                st.datasources[uid]["secureJsonData"] = body.get("secureJsonData", kept)
                return 200, {"message": "Datasource updated", "datasource": body}
        if path == "/api/datasources" and method == "POST":
            if problem := _datasource_problem(body, st, None):
                status = 409 if "already exists" in problem else 400
                return status, {"message": problem}
            st.datasources[body["uid"]] = {"id": len(st.datasources) + 1, **body}
            return 200, {"message": "Datasource added", "name": body["name"]}
        if m := re.fullmatch(r"/api/dashboards/uid/([^/]+)", path):
            d = st.dashboards.get(m.group(1))
            if method == "GET":
                return (200, copy.deepcopy(d)) if d else (404, {"message": "Dashboard not found"})
        if path == "/api/dashboards/db" and method == "POST":
            return self._save_dashboard(body)
        if path.startswith("/api/v1/provisioning/"):
            return _alerting(st, method, path.removeprefix("/api/v1/provisioning/"), body)
        return 404, {"message": "Not found"}

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        st = self.server.state
        dash = body.get("dashboard") or {}
        uid = dash.get("uid", "")
        if not dash.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        if not _UID.match(uid):
            return 400, {"message": "uid contains illegal characters or is too long"}
        folder = body.get("folderUid")
        if folder and folder not in st.folders:
            return 400, {"message": "folder not found"}
        old = st.dashboards.get(uid)
        if old and not body.get("overwrite") and dash.get("version") != old["dashboard"]["version"]:
            return 412, {"message": "The dashboard has been changed by someone else"}
        plain = {k: v for k, v in dash.items() if k not in ("id", "version")}
        if sdk_round_trip(plain) != plain:
            st.problems.append(f"dashboard {uid} does not survive the SDK's model unchanged")
        for panel in dash.get("panels", []):
            for target in panel.get("targets", []):
                ds = (target.get("datasource") or {}).get("uid")
                if ds not in st.datasources:
                    st.problems.append(
                        f"dashboard {uid} panel {panel.get('id')}: no data source {ds}"
                    )
        version = (old["dashboard"]["version"] + 1) if old else 1
        stored = {**dash, "id": old["dashboard"]["id"] if old else len(st.dashboards) + 1}
        stored["version"] = version
        st.dashboards[uid] = {"dashboard": stored, "meta": {"folderUid": folder or ""}}
        return 200, {"id": stored["id"], "uid": uid, "status": "success", "version": version}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


_SECURE = {"password", "token", "authorization_credentials", "apiKey", "basicAuthPassword"}
_NO_DATA = {"Alerting", "NoData", "OK", "KeepLast"}
_EXEC_ERR = {"Alerting", "Error", "OK", "KeepLast"}
_DURATION = re.compile(r"^(0|((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?)$")
_EXPRESSION_TYPES = {"math", "reduce", "resample", "classic_conditions", "threshold"}
# Grafana 11's threshold types: eq, gte... came later (grafana#99516).
_THRESHOLDS_11 = {"gt", "lt", "within_range", "outside_range"}
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTACT_TYPES = {"prometheus-alertmanager": "url", "webhook": "url", "email": "addresses"}
_MATCH_OPS = {"=", "!=", "=~", "!~"}
_WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _alerting(st: GrafanaState, method: str, path: str, body: Any) -> tuple[int, Any]:
    """The alerting provisioning API (/api/v1/provisioning/...)."""
    if path == "contact-points" and method == "GET":
        shown = []
        for cp in st.contact_points.values():
            settings = {k: "[REDACTED]" if k in _SECURE else v for k, v in cp["settings"].items()}
            shown.append({**cp, "settings": settings})
        return 200, shown
    if (path == "contact-points" and method == "POST") or (
        path.startswith("contact-points/") and method == "PUT"
    ):
        for key in ("name", "type", "settings"):
            if not body.get(key):
                return 400, {"message": f"contact point {key} is required"}
        need = _CONTACT_TYPES.get(body["type"])
        if need is None:
            return 400, {"message": f"unknown contact point type {body['type']!r}"}
        if not body["settings"].get(need):
            return 400, {"message": f"{body['type']} contact point: settings.{need} is required"}
        uid = body.get("uid") or path.removeprefix("contact-points/")
        if not _UID.match(uid):
            return 400, {"message": "uid contains illegal characters or is too long"}
        if method == "PUT" and uid not in st.contact_points:
            return 404, {"message": "contact point not found"}
        if method == "POST" and uid in st.contact_points:
            return 409, {"message": "contact point with this uid already exists"}
        st.contact_points[uid] = {**body, "uid": uid}
        return 202, st.contact_points[uid]
    if path.startswith("mute-timings"):
        name = path.removeprefix("mute-timings").removeprefix("/")
        if method == "GET" and name:
            mt = st.mute_timings.get(name)
            return (200, mt) if mt else (404, {"message": "mute timing not found"})
        if method in ("POST", "PUT"):
            if not body.get("name") or not isinstance(body.get("time_intervals"), list):
                return 400, {"message": "a mute timing needs name and time_intervals"}
            if problem := _time_intervals_problem(body["time_intervals"]):
                return 400, {"message": f"mute timing {body['name']!r}: {problem}"}
            if method == "PUT" and name not in st.mute_timings:
                return 404, {"message": "mute timing not found"}
            st.mute_timings[body["name"]] = body
            return (201 if method == "POST" else 200), body
    if path == "policies":
        if method == "GET":
            return 200, st.policies
        if method == "PUT":
            names = {cp["name"] for cp in st.contact_points.values()} | {"grafana-default-email"}
            problem = _route_problem(body, names, set(st.mute_timings))
            if problem:
                return 400, {"message": problem}
            st.policies = body
            return 202, {"message": "policies updated"}
    if m := re.fullmatch(r"folder/([^/]+)/rule-groups/([^/]+)", path):
        group_key = (m.group(1), m.group(2))
        if method == "GET":
            group = st.rule_groups.get(group_key)
            return (200, group) if group else (404, {"message": "rule group not found"})
        if method == "PUT":
            problem = _rule_group_problem(st, group_key, body)
            if problem:
                return 400, {"message": problem}
            if int(st.version.split(".")[0]) < 12:  # Grafana 11 has no keep_firing_for
                body = {
                    **body,
                    "rules": [
                        {k: v for k, v in r.items() if k != "keep_firing_for"}
                        for r in body["rules"]
                    ],
                }
            st.rule_groups[group_key] = {**body, "folderUid": group_key[0]}
            return 200, st.rule_groups[group_key]
    return 404, {"message": "Not found"}


def _route_problem(
    route: dict[str, Any], receivers: set[str], mutes: set[str], root: bool = True
) -> str | None:
    if root and not route.get("receiver"):
        return "the root policy needs a receiver"
    if root and (route.get("object_matchers") or route.get("matchers")):
        return "the root policy must not have matchers"
    if "receiver" in route and route["receiver"] not in receivers:
        return f"receiver {route['receiver']!r} does not exist"
    for key in ("mute_time_intervals", "active_time_intervals"):
        for name in route.get(key, []):
            if name not in mutes:
                return f"{key}: time interval {name!r} does not exist"
    for matcher in route.get("object_matchers", []):
        if len(matcher) != 3 or matcher[1] not in _MATCH_OPS or not _LABEL.match(matcher[0]):
            return f"object matcher {matcher!r} is not [label, op, value]"
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if key in route and not _DURATION.match(str(route[key])):
            return f"{key} {route[key]!r} is not a duration"
    for child in route.get("routes", []):
        if problem := _route_problem(child, receivers, mutes, root=False):
            return problem
    return None


def _time_intervals_problem(intervals: list[Any]) -> str | None:
    for ti in intervals:
        unknown = set(ti) - {"times", "weekdays", "days_of_month", "months", "years", "location"}
        if unknown:
            return f"unknown time interval field(s) {sorted(unknown)}"
        for t in ti.get("times", []):
            if not (_HHMM.match(t.get("start_time", "")) and _HHMM.match(t.get("end_time", ""))):
                return f"times {t!r} are not HH:MM"
        for day in ti.get("weekdays", []):
            if any(d not in _WEEKDAYS for d in str(day).split(":")):
                return f"weekday {day!r}"
        if "location" in ti:
            try:
                zoneinfo.ZoneInfo(ti["location"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                return f"location {ti['location']!r} is not a time zone"
    return None


def _rule_group_problem(st: GrafanaState, key: tuple[str, str], body: Any) -> str | None:
    folder, group = key
    if folder not in st.folders:
        return f"folder {folder} not found"
    interval = body.get("interval")
    if not isinstance(interval, int) or interval <= 0 or interval % 10:
        return "interval must be a positive multiple of 10 seconds"
    titles = {
        r["title"]
        for (f, g), other in st.rule_groups.items()
        if f == folder and g != group
        for r in other["rules"]
    }
    for rule in body.get("rules", []):
        for k in ("uid", "title", "condition", "data"):
            if not rule.get(k):
                return f"rule {rule.get('title')!r}: {k} is required"
        if problem := _rule_problem(st, rule):
            return f"rule {rule['title']!r}: {problem}"
        if rule.get("folderUID") != folder or rule.get("ruleGroup") != group:
            return f"rule {rule['title']!r}: folderUID/ruleGroup do not match the path"
        if rule["title"] in titles:
            return f"rule {rule['title']!r}: a rule with this title exists in the folder"
        titles.add(rule["title"])
    return None


def _rule_problem(st: GrafanaState, rule: dict[str, Any]) -> str | None:
    if not _UID.match(rule["uid"]):
        return f"uid {rule['uid']!r} contains illegal characters or is too long"
    if len(rule["title"]) > 190:
        return "title longer than 190 characters"
    for key in ("for", "keep_firing_for"):
        if key in rule and not _DURATION.match(str(rule[key])):
            return f"{key} {rule[key]!r} is not a duration"
    if rule.get("noDataState", "NoData") not in _NO_DATA:
        return f"noDataState {rule['noDataState']!r}"
    if rule.get("execErrState", "Error") not in _EXEC_ERR:
        return f"execErrState {rule['execErrState']!r}"
    refs = [q.get("refId") for q in rule["data"]]
    if len(set(refs)) != len(refs) or not all(refs):
        return f"refIds {refs} are not unique and non-empty"
    if rule["condition"] not in refs:
        return f"condition {rule['condition']!r} is no query's refId"
    for q in rule["data"]:
        if problem := _query_problem(st, q, set(refs) - {q["refId"]}):
            return f"query {q['refId']}: {problem}"
    for name in rule.get("labels", {}):
        if not _LABEL.match(name):
            return f"label name {name!r}"
    notes = rule.get("annotations", {})
    dash, panel = notes.get("__dashboardUid__"), notes.get("__panelId__")
    if bool(dash) != bool(panel):
        return "both annotations __dashboardUid__ and __panelId__ must be specified"
    if panel is not None and not str(panel).isdigit():
        return "annotation __panelId__ must be a valid integer Panel ID"
    return None


def _query_problem(st: GrafanaState, q: dict[str, Any], others: set[str]) -> str | None:
    model = q.get("model") or {}
    if model.get("refId", q["refId"]) != q["refId"]:
        return "model.refId differs from refId"
    uid = q.get("datasourceUid")
    if uid != "__expr__":
        if uid not in st.datasources:
            return f"data source {uid!r} not found"
        if st.datasources[uid]["type"] == "prometheus" and not model.get("expr"):
            return "a Prometheus query needs expr"
        return None
    kind = model.get("type")
    if kind not in _EXPRESSION_TYPES:
        return f"expression type {kind!r}"
    if kind in ("threshold", "reduce", "resample") and model.get("expression") not in others:
        return f"expression {model.get('expression')!r} names no other query"
    if kind == "math" and not model.get("expression"):
        return "a math expression needs expression"
    if kind == "threshold":
        conditions = model.get("conditions") or []
        if len(conditions) != 1:
            return "threshold expression requires exactly one condition"
        for part in ("evaluator", "unloadEvaluator"):
            ev = conditions[0].get(part)
            if ev is None and part == "unloadEvaluator":
                continue
            if not ev or ev.get("type") not in _THRESHOLDS_11:
                return f"{part} {ev!r} is not one of Grafana 11's {sorted(_THRESHOLDS_11)}"
            if not ev.get("params") or not all(isinstance(v, int | float) for v in ev["params"]):
                return f"{part} params {ev.get('params')!r}"
    return None


def _datasource_problem(body: Any, st: GrafanaState, uid: str | None) -> str | None:
    for key in ("name", "type", "access"):
        if not body.get(key):
            return f"data source {key} is required"
    if body["access"] not in ("proxy", "direct"):
        return f"access {body['access']!r} is not proxy or direct"
    if not _UID.match(body.get("uid", "")):
        return "uid contains illegal characters or is too long"
    for other_uid, other in st.datasources.items():
        if other["name"] == body["name"] and other_uid != uid:
            return "data source with the same name already exists"
    if uid is None and body["uid"] in st.datasources:
        return "data source with the same uid already exists"
    return None


class _Server(ThreadingHTTPServer):
    def __init__(self, state: GrafanaState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class RecordingGrafana:
    """The stand-in, served from a thread on a port the OS picks; a context manager."""

    def __init__(self, token: str, version: str = "12.3.1") -> None:
        self.state = GrafanaState(token, version)
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RecordingGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
