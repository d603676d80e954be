"""docker-compose.yml: valid against the compose specification, and consistent with the
exported Grafana provisioning and the stampline configuration the stack runs.

No Docker engine runs here, so nothing is started: every check reads the files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from stampline.alerting import load_alerts
from stampline.config import Config, load_config
from stampline.dashboards import (
    CLICKHOUSE_UID,
    ENV_CLICKHOUSE_PASSWORD,
    PROMETHEUS_UID,
    GrafanaSettings,
    export,
    grafana_alerting,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
STACK_CONFIG = ROOT / "deploy/stampline/stampline.yaml"
PROVISIONING = ROOT / "deploy/grafana/provisioning"
# Images only from their projects' own publishers, each pinned to a version.
PUBLISHERS = {
    "apache/kafka",
    "clickhouse/clickhouse-server",
    "prom/prometheus",
    "prom/alertmanager",
    "grafana/grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


@pytest.fixture(scope="module")
def stack() -> Config:
    return load_config(STACK_CONFIG)


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """container path -> (host path or volume name, read-only)."""
    found = {}
    for v in service.get("volumes", []):
        host, container, *mode = v.split(":")
        found[container] = (host, mode == ["ro"])
    return found


def _host_path(service: str, mounts: dict[str, tuple[str, bool]], inside: str) -> Path:
    """The repository file a container path is a read-only mount of."""
    for target, (host, read_only) in mounts.items():
        if inside.startswith(target + "/"):
            assert read_only, f"{service}: {target} should be read-only"
            return ROOT / host / inside[len(target) + 1 :]
    raise AssertionError(f"{service}: {inside} is in no mount")


def _datasources() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((PROVISIONING / "datasources/stampline.yaml").read_text())
    return {d["uid"]: d for d in doc["datasources"]}


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    """The file validates against the compose-spec JSON schema (as shipped by check-jsonschema)."""
    schema_text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    validator = jsonschema.Draft202012Validator(json.loads(schema_text))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose 1.29 (Debian docker-compose)"
)
def test_compose_file_is_accepted_by_debians_docker_compose() -> None:
    """Debian's docker-compose 1.29 (what `apt install docker-compose` gives) reads the file:
    it refuses keys newer than it, such as a top-level `name:`. No engine is needed to check."""
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "GRAFANA_ADMIN_PASSWORD": "x", "CLICKHOUSE_PASSWORD": "x"},
    )
    assert done.returncode == 0, done.stderr


def test_every_dependency_waits_for_health_or_completion(
    services: dict[str, dict[str, Any]],
) -> None:
    """depends_on always names a condition; a service waited on as healthy has a healthcheck."""
    for name, svc in services.items():
        for dep, how in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    long_running = {n for n, s in services.items() if s.get("restart") != "no"}
    assert {n for n in long_running if "healthcheck" not in services[n]} == {"stampline-demo-feed"}


def test_images_come_from_their_publishers_pinned(services: dict[str, dict[str, Any]]) -> None:
    """Every image is from its project's own publisher (or built here) and pinned, not latest."""
    for name, svc in services.items():
        if "build" in svc:
            continue
        repo, _, tag = svc["image"].partition(":")
        assert repo in PUBLISHERS, f"{name}: {repo}"
        assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{name}: tag {tag!r} is not a version"


def test_host_paths_mounted_exist(services: dict[str, dict[str, Any]]) -> None:
    """Every ./path mounted into a container exists in the repository."""
    for name, svc in services.items():
        for host, _ in _mounts(svc).values():
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name} mounts missing {host}"


def test_committed_provisioning_is_what_export_writes(tmp_path: Path, stack: Config) -> None:
    """deploy/grafana is exactly `grafana export` with the stack's config, its alert rules
    included: nothing drifted, nothing missing."""
    url = urlparse(stack.store.url or "")
    assert stack.alerting.definitions is not None, "the stack names no alert definitions"
    rules = grafana_alerting(
        load_alerts(stack.alerting.definitions), alertmanager_url=stack.alerting.alertmanager_url
    )
    export(
        tmp_path,
        GrafanaSettings(
            database=stack.store.database,
            clickhouse_host=url.hostname or "",
            clickhouse_port=url.port or 8123,
        ),
        alerting=rules.sections,
    )
    fresh = {
        p.relative_to(tmp_path / "provisioning"): p.read_text()
        for p in (tmp_path / "provisioning").rglob("*.*")
    }
    committed = {
        p.relative_to(PROVISIONING): p.read_text()
        for p in PROVISIONING.rglob("*.*")
        if p.name != ".gitkeep"
    }
    assert committed == fresh
    assert {p.name for p in (PROVISIONING / "alerting").iterdir()} == {
        "stampline-rules.yaml",
        "stampline-notifications.yaml",
    }


def test_grafana_loads_the_provisioning_read_only_with_the_plugin(
    services: dict[str, dict[str, Any]],
) -> None:
    """Grafana mounts the tree read-only, installs the ClickHouse plugin, gets the password."""
    grafana = services["grafana"]
    assert _mounts(grafana)["/etc/grafana/provisioning"] == ("./deploy/grafana/provisioning", True)
    env = _env(grafana)
    assert _datasources()[CLICKHOUSE_UID]["type"] in env["GF_INSTALL_PLUGINS"].split(",")
    ch_env = _env(services["clickhouse"])
    assert env[ENV_CLICKHOUSE_PASSWORD] == ch_env["GRAFANA_CLICKHOUSE_PASSWORD"]


def test_datasources_point_at_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    """The ClickHouse and Prometheus data sources name services, ports and users that exist."""
    ds = _datasources()
    ch = ds[CLICKHOUSE_UID]["jsonData"]
    ch_env = _env(services["clickhouse"])
    assert ch["host"] in services
    assert any(p.endswith(f":{ch['port']}") for p in services[ch["host"]]["ports"])
    assert ch["username"] == ch_env["GRAFANA_CLICKHOUSE_USER"]
    assert ch["defaultDatabase"] == ch_env["CLICKHOUSE_DB"]
    prom = urlparse(ds[PROMETHEUS_UID]["url"])
    assert prom.hostname in services
    assert any(p.endswith(f":{prom.port}") for p in services[str(prom.hostname)]["ports"])


def test_stampline_config_matches_the_stack(
    services: dict[str, dict[str, Any]], stack: Config
) -> None:
    """The stack's stampline config reaches Kafka's internal listener, ClickHouse as its user,
    and uses transactions, which the broker is set up for at replication factor 1."""
    kafka = _env(services["kafka"])
    internal = re.search(r"INTERNAL://([\w.-]+:\d+)", kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert internal is not None
    assert stack.broker.bootstrap_servers == internal.group(1)
    assert stack.gate.delivery == "exactly_once"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert kafka[key] == "1"
    store = urlparse(stack.store.url or "")
    ch_env = _env(services["clickhouse"])
    assert store.hostname in services
    assert stack.store.user == ch_env["CLICKHOUSE_USER"]
    assert stack.store.database == ch_env["CLICKHOUSE_DB"]


def test_stampline_containers_see_their_config_and_rule_files(
    services: dict[str, dict[str, Any]], stack: Config
) -> None:
    """STAMPLINE_CONFIG and the rule and alert definition files it names resolve, inside the
    containers, to mounts of the repository files the host-side check loaded."""
    sidecars = {n: s for n, s in services.items() if n.startswith("stampline-")}
    assert set(sidecars) >= {
        "stampline-migrate",
        "stampline-gate",
        "stampline-recorder",
        "stampline-tap",
    }
    for name, svc in sidecars.items():
        mounts = _mounts(svc)
        env = _env(svc)
        assert (
            env["STAMPLINE_STORE__PASSWORD"] == _env(services["clickhouse"])["CLICKHOUSE_PASSWORD"]
        )

        assert _host_path(name, mounts, env["STAMPLINE_CONFIG"]).resolve() == STACK_CONFIG.resolve()
        container_dir = os.path.dirname(env["STAMPLINE_CONFIG"])
        assert stack.alerting.definitions is not None
        for rule_file in [*stack.rules.files, stack.alerting.definitions]:
            relative = os.path.relpath(rule_file, STACK_CONFIG.parent)
            inside = os.path.normpath(os.path.join(container_dir, relative))
            assert _host_path(name, mounts, inside).resolve() == rule_file.resolve()


def test_prometheus_scrapes_the_sidecars_and_alerts_through_alertmanager(
    services: dict[str, dict[str, Any]], stack: Config
) -> None:
    """Prometheus scrapes gate and tap on the configured metrics port and alerts to the
    compose Alertmanager; its rule folder is mounted."""
    prom = services["prometheus"]
    mounts = _mounts(prom)
    cfg = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"][0]).read_text())
    (job,) = cfg["scrape_configs"]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    sidecars = ("stampline-gate", "stampline-recorder", "stampline-tap")
    assert targets == {f"{n}:{stack.metrics.port}" for n in sidecars}
    assert stack.metrics.enabled
    (am,) = [
        t
        for a in cfg["alerting"]["alertmanagers"]
        for sc in a["static_configs"]
        for t in sc["targets"]
    ]
    host, port = am.split(":")
    assert host in services
    assert any(p.endswith(f":{port}") for p in services[host]["ports"])
    rules_dir = cfg["rule_files"][0].rsplit("/", 1)[0]
    assert rules_dir in mounts


def test_clickhouse_grafana_user_is_read_only(services: dict[str, dict[str, Any]]) -> None:
    """The init script gives the Grafana user SELECT on the stampline database and no more."""
    host_dir = _mounts(services["clickhouse"])["/docker-entrypoint-initdb.d"][0]
    script = "\n".join(p.read_text() for p in sorted((ROOT / host_dir).glob("*.sh")))
    grants = re.findall(r"GRANT (.+?) ON (\S+) TO \$\{GRAFANA_CLICKHOUSE_USER\}", script)
    assert grants == [("SELECT", "${CLICKHOUSE_DB}.*")]
    assert "readonly = 2" in script


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_prometheus_config_passes_promtool(services: dict[str, dict[str, Any]]) -> None:
    """The mounted prometheus.yml passes `promtool check config`."""
    host = _mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"][0]
    done = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(ROOT / host)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool (Debian prometheus-alertmanager)"
)
def test_alertmanager_config_passes_amtool(services: dict[str, dict[str, Any]]) -> None:
    """The mounted alertmanager.yml passes `amtool check-config`."""
    host = _mounts(services["alertmanager"])["/etc/alertmanager/alertmanager.yml"][0]
    done = subprocess.run(
        ["amtool", "check-config", str(ROOT / host)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_stampline_image_copies_every_package(services: dict[str, dict[str, Any]]) -> None:
    """The Dockerfile the stack builds copies the `stampline` folder and every component
    folder it links to (stampline/rules -> rules/, ...): the whole installed package tree."""
    build = services["stampline-gate"]["build"]
    dockerfile = (ROOT / build["context"] / build["dockerfile"]).read_text()
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, flags=re.MULTILINE))
    linked = {p.resolve().name for p in (ROOT / "stampline").iterdir() if p.is_symlink()}
    packages = {"stampline"} | linked
    assert linked >= {"rules", "audit", "collectors", "alerting", "dashboards", "evidence"}
    assert copied == packages
