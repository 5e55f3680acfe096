"""docker-compose.yml, checked without a Docker engine: images or builds, mounted files that
exist, RATEWARDEN_* variables the settings define, health checks and start order."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ratewarden.analytics.admin import AdminSettings
from ratewarden.enforcer.settings import EnforcerSettings
from ratewarden.stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _known_variables() -> set[str]:
    names = set()
    for settings in (EnforcerSettings, StreamSettings, AdminSettings):
        names |= {f"RATEWARDEN_{field.upper()}" for field in settings.model_fields}
    return names


def _one_shot() -> set[str]:
    """Services that run once and exit: those others wait to complete, and those never restarted."""
    waited_for = {name for service in SERVICES.values()
                  for name, condition in (service.get("depends_on") or {}).items()
                  if isinstance(condition, dict) and condition.get("condition") == "service_completed_successfully"}
    return waited_for | {name for name, service in SERVICES.items() if service.get("restart") == "no"}


def _in_profile(profile: str) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in SERVICES.items() if profile in service.get("profiles", [])}


def test_the_full_stack_is_there() -> None:
    assert {"redis", "kafka", "clickhouse", "grafana", "api", "worker", "admin"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka")
    assert "KAFKA_PROCESS_ROLES" in SERVICES["kafka"]["environment"]
    assert "grafana-clickhouse-datasource" in SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]


def test_every_service_has_an_image_or_a_build_that_exists() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = ROOT / (service["build"] if isinstance(service["build"], str) else service["build"]["context"])
            assert (context / "Dockerfile").is_file(), name
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_api_image_has_no_stream_or_embedded_engine() -> None:
    """The API image installs the enforcer's extras only; the worker image everything but the embedded servers."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S))
    assert re.findall(r"\[([a-z,]+)\]\"", stages["api"]) == ["fastapi,kafka", "standard"]  # + uvicorn[standard]
    assert "local" not in re.findall(r"\[([a-z,]+)\]\"", stages["worker"])[0].split(",")
    for service in SERVICES.values():
        if "build" in service:
            expected = "api" if service["command"][0] == "uvicorn" else "worker"
            assert service["build"]["target"] == expected, service["command"]


def test_every_mounted_file_exists_in_the_repository() -> None:
    mounts = 0
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
                mounts += 1
            else:
                assert source in COMPOSE.get("volumes", {}), (name, source)
    assert mounts >= 3
    provisioned = (ROOT / "dashboards/provisioning/dashboards/ratewarden.yaml").read_text()
    assert "/var/lib/grafana/dashboards/ratewarden" in provisioned
    assert any(v.endswith("/var/lib/grafana/dashboards/ratewarden:ro") for v in SERVICES["grafana"]["volumes"])


def test_every_ratewarden_variable_is_a_setting() -> None:
    known = _known_variables()
    used = {key for service in SERVICES.values() for key in (service.get("environment") or {})
            if key.startswith("RATEWARDEN_")}
    used |= set(re.findall(r"\$\{(RATEWARDEN_[A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert len(used) >= 10
    assert used - known == set()


def test_health_checks_and_start_order() -> None:
    one_shot = _one_shot()
    assert one_shot == {"migrate", "redis-cluster-init"}
    for name, service in SERVICES.items():
        if name not in one_shot:
            assert service["healthcheck"]["test"], name
        for dependency in service.get("depends_on") or {}:
            assert dependency in SERVICES, (name, dependency)
    for name in ("worker", "api"):
        assert SERVICES[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert SERVICES["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_cluster_profile_is_a_healthy_redis_cluster_formed_once_its_nodes_are_healthy() -> None:
    cluster = _in_profile("cluster")
    nodes = {"redis-c1", "redis-c2", "redis-c3"}
    assert set(cluster) == nodes | {"redis-cluster-init"}
    assert all("profiles" not in service for name, service in SERVICES.items() if name not in cluster)  # optional
    for name in nodes:
        node = cluster[name]
        assert node["image"].startswith(("valkey/valkey:", "redis:"))
        command = " ".join(node["command"])
        assert "--cluster-enabled yes" in command and "--cluster-config-file" in command
        assert f"--cluster-announce-hostname {name}" in command
        assert node["healthcheck"]["test"], name
    init = cluster["redis-cluster-init"]
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in nodes}
    script = " ".join(init["command"])
    assert "--cluster create" in script and script.count(":6379") >= 3 and "--cluster-yes" in script
    assert "redis+cluster://redis-c1:6379,redis-c2:6379,redis-c3:6379" in (ROOT / "docker-compose.yml").read_text()
    # the Python services take the cluster's URL from the environment; without it, the single Redis
    assert COMPOSE["x-ratewarden-env"]["RATEWARDEN_REDIS_URL"] == "${RATEWARDEN_REDIS_URL:-redis://redis:6379/0}"
